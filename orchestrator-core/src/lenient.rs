//! The enum spelling rule of D1 (docs/DECISIONS.md#d1), as one macro every wire enum uses.
//!
//! Input accepts any spelling that matches a variant case-insensitively once `-`, `_`
//! and spaces are removed (`add-node`, `AddNode` and `ADD_NODE` are equal). Output always
//! writes the spelling the upstream C# runtime writes (the member name, e.g. `Healthy`,
//! `Shutting_down`), so existing C# clients keep parsing what we send.

/// True when `input` equals `canonical` ignoring ASCII case, `-`, `_` and spaces.
///
/// Allocation-free: both sides are filtered and compared byte by byte.
pub fn lenient_eq(input: &str, canonical: &str) -> bool {
    let significant = |b: &u8| !matches!(b, b'-' | b'_' | b' ');
    let mut a = input.bytes().filter(significant);
    let mut b = canonical.bytes().filter(significant);
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(&y) => {}
            _ => return false,
        }
    }
}

/// Error returned when a string matches no variant of a wire enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{input}`; expected one of: {expected}")]
pub struct UnknownVariant {
    /// Name of the enum, e.g. `BackendType`.
    pub kind: &'static str,
    /// The rejected input.
    pub input: String,
    /// Accepted spellings (runtime spelling), comma separated.
    pub expected: String,
}

/// Defines a wire enum with the D1 rule: `Display`/`Serialize` write the runtime spelling,
/// `FromStr`/`Deserialize` accept any spelling per [`lenient_eq`].
///
/// ```
/// orchestrator_core::lenient_enum! {
///     /// Example.
///     pub enum Colour { /// Red.
///         Red => "Red", /// Dark blue.
///         DarkBlue => "DarkBlue" }
/// }
/// assert_eq!("dark-blue".parse::<Colour>().unwrap(), Colour::DarkBlue);
/// assert_eq!(Colour::DarkBlue.to_string(), "DarkBlue");
/// ```
#[macro_export]
macro_rules! lenient_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $wire:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            #[allow(dead_code)]
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The spelling the upstream runtime writes for this variant.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire,)+ }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::core::str::FromStr for $name {
            type Err = $crate::lenient::UnknownVariant;
            fn from_str(s: &str) -> ::core::result::Result<Self, Self::Err> {
                $( if $crate::lenient::lenient_eq(s, $wire) { return Ok($name::$variant); } )+
                Err($crate::lenient::UnknownVariant {
                    kind: stringify!($name),
                    input: s.to_owned(),
                    expected: [$($wire),+].join(", "),
                })
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> ::core::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::core::result::Result<Self, D::Error> {
                struct V;
                impl ::serde::de::Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                        write!(f, "a {} ({})", stringify!($name), [$($wire),+].join(", "))
                    }
                    fn visit_str<E: ::serde::de::Error>(self, v: &str) -> ::core::result::Result<$name, E> {
                        v.parse().map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::lenient_eq;

    crate::lenient_enum! {
        /// Test enum.
        enum Action { /// a
            AddNode => "AddNode", /// b
            ShuttingDown => "Shutting_down" }
    }

    #[test]
    fn every_spelling_of_d1_parses() {
        for s in ["add-node", "AddNode", "ADD_NODE", "addnode", "Add Node"] {
            assert_eq!(s.parse::<Action>().unwrap(), Action::AddNode, "{s}");
        }
        assert_eq!(
            "shutting_down".parse::<Action>().unwrap(),
            Action::ShuttingDown
        );
        assert_eq!(
            "ShuttingDown".parse::<Action>().unwrap(),
            Action::ShuttingDown
        );
    }

    #[test]
    fn output_is_runtime_spelling_and_errors_list_choices() {
        assert_eq!(
            serde_json::to_string(&Action::ShuttingDown).unwrap(),
            "\"Shutting_down\""
        );
        let err = "remove".parse::<Action>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown Action `remove`; expected one of: AddNode, Shutting_down"
        );
        let err = serde_json::from_str::<Action>("\"nope\"").unwrap_err();
        assert!(err.to_string().contains("expected one of"), "{err}");
    }

    #[test]
    fn lenient_eq_rejects_prefixes_and_extra_letters() {
        assert!(!lenient_eq("add", "AddNode"));
        assert!(!lenient_eq("addnodes", "AddNode"));
        assert!(lenient_eq("--a_d-d node", "AddNode"));
    }
}
