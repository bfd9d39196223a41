//! Preset YAML (spec 4): parsing with both key spellings, validation with file/line/column, and the preset directory.
