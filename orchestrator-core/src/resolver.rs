//! Preset or request topology -> resolved nodes with app-ids, hosted services and full environments (spec 4.3, 5.1, 5.2).
