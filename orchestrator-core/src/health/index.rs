//! Interned service names and the instances running each.

use rustc_hash::{FxHashMap, FxHashSet};

/// Interned service names and, per name, the instances running it.
///
/// Slots refer to names by id, so the steady-state comparison reads the incoming name
/// against a small, always-cached table instead of one heap string per slot. Names are
/// never un-interned (the set of service names is small and bounded by the catalog).
#[derive(Debug, Clone, Default)]
pub(super) struct ServiceIndex {
    ids: FxHashMap<Box<str>, usize>,
    entries: Vec<IndexEntry>,
}

#[derive(Debug, Clone)]
struct IndexEntry {
    name: Box<str>,
    instances: FxHashSet<u128>,
}

impl ServiceIndex {
    pub(super) fn intern(&mut self, name: &str) -> usize {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.entries.len();
        self.entries.push(IndexEntry {
            name: name.into(),
            instances: FxHashSet::default(),
        });
        self.ids.insert(name.into(), id);
        id
    }

    pub(super) fn id(&self, name: &str) -> Option<usize> {
        self.ids.get(name).copied()
    }

    pub(super) fn name(&self, id: usize) -> &str {
        self.entries.get(id).map_or("", |e| &e.name)
    }

    pub(super) fn is(&self, id: usize, name: &str) -> bool {
        self.entries.get(id).is_some_and(|e| *e.name == *name)
    }

    pub(super) fn insert(&mut self, id: usize, instance: u128) {
        if let Some(e) = self.entries.get_mut(id) {
            e.instances.insert(instance);
        }
    }

    pub(super) fn remove(&mut self, id: usize, instance: u128) {
        if let Some(e) = self.entries.get_mut(id) {
            e.instances.remove(&instance);
        }
    }

    pub(super) fn members(&self, id: usize) -> impl Iterator<Item = u128> + '_ {
        self.entries
            .get(id)
            .into_iter()
            .flat_map(|e| e.instances.iter().copied())
    }

    /// Names with at least one instance.
    pub(super) fn live_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries
            .iter()
            .filter(|e| !e.instances.is_empty())
            .map(|e| &*e.name)
    }
}
