//! The registry of civic modules: which module owns which tables, where its events are
//! stored and how its old event versions are upcast.
//!
//! A module `name` owns every table starting with `name_` (only it may write them) and keeps
//! its events in one table, `name_events` by default. The shipped modules are `council`,
//! `school`, `kiosk` and `bus`; the bus keeps its own catalog's events in
//! `bus_catalog_events`, because its `bus_events` table is the CloudEvents log itself.
//!
//! The registry is a value built at start (the shipped modules plus any extra, e.g. in
//! tests), handed to the server; there is no global.

use crate::events::{EventError, UpcastFn, Upcasters};
use crate::schema::validate_table_name;

/// Names of the modules shipped with civiclake.
pub const SHIPPED_MODULES: [&str; 4] = ["council", "school", "kiosk", "bus"];

/// A problem registering a module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    /// The module name is not a lowercase word.
    #[error(
        "invalid module name {0:?}: use 1-32 lowercase ASCII letters or digits, starting with a letter"
    )]
    InvalidName(String),
    /// Another module has this name.
    #[error("module '{0}' is already registered")]
    Duplicate(String),
    /// The events table is not a table of the module.
    #[error(
        "events table {table:?} of module '{module}' must be a table name starting with '{module}_'"
    )]
    EventsTable {
        /// Module.
        module: String,
        /// Table given.
        table: String,
    },
    /// An upcaster is invalid, duplicated or missing.
    #[error("module '{module}': {source}")]
    Upcaster {
        /// Module.
        module: String,
        /// The problem.
        source: EventError,
    },
}

/// A civic module as the platform knows it.
#[derive(Debug, Clone)]
pub struct Module {
    name: String,
    table_prefix: String,
    events_table: String,
    upcasters: Upcasters,
}

impl Module {
    /// The module `name`, owning the tables `name_*`, with its events in `name_events`.
    pub fn new(name: &str) -> Result<Self, ModuleError> {
        let mut chars = name.chars();
        let ok = name.len() <= 32
            && chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !ok {
            return Err(ModuleError::InvalidName(name.to_string()));
        }
        Ok(Self {
            name: name.to_string(),
            table_prefix: format!("{name}_"),
            events_table: format!("{name}_events"),
            upcasters: Upcasters::new(),
        })
    }

    /// Keeps the events in `table` (one of the module's tables) instead of `name_events`.
    pub fn with_events_table(mut self, table: &str) -> Result<Self, ModuleError> {
        if !table.starts_with(&self.table_prefix)
            || table.len() == self.table_prefix.len()
            || validate_table_name(table).is_err()
        {
            return Err(ModuleError::EventsTable {
                module: self.name,
                table: table.to_string(),
            });
        }
        self.events_table = table.to_string();
        Ok(self)
    }

    /// Registers the function upcasting `event_type` payloads from `from_version` to the
    /// next version (see [`Upcasters`]).
    pub fn with_upcaster(
        mut self,
        event_type: &str,
        from_version: u32,
        function: UpcastFn,
    ) -> Result<Self, ModuleError> {
        self.upcasters
            .register(event_type, from_version, function)
            .map_err(|source| ModuleError::Upcaster {
                module: self.name.clone(),
                source,
            })?;
        Ok(self)
    }

    /// The module's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The prefix of the module's tables (`name_`).
    pub fn table_prefix(&self) -> &str {
        &self.table_prefix
    }

    /// The table holding the module's events.
    pub fn events_table(&self) -> &str {
        &self.events_table
    }

    /// The module's upcasting functions.
    pub fn upcasters(&self) -> &Upcasters {
        &self.upcasters
    }

    /// Whether `table` is one of the module's tables.
    pub fn owns_table(&self, table: &str) -> bool {
        table.starts_with(&self.table_prefix)
    }
}

/// The modules of a running platform.
#[derive(Debug, Clone, Default)]
pub struct ModuleRegistry {
    modules: Vec<Module>,
}

impl ModuleRegistry {
    /// A registry with no modules.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The shipped modules: `council`, `school`, `kiosk` and `bus` (events in
    /// `bus_catalog_events`).
    pub fn shipped() -> Self {
        let modules = SHIPPED_MODULES
            .iter()
            .filter_map(|name| {
                let module = Module::new(name).ok()?;
                if *name == "bus" {
                    module.with_events_table("bus_catalog_events").ok()
                } else {
                    Some(module)
                }
            })
            .collect();
        Self { modules }
    }

    /// Adds `module` (its upcasters are checked for gaps).
    pub fn register(&mut self, module: Module) -> Result<(), ModuleError> {
        if self.get(&module.name).is_some() {
            return Err(ModuleError::Duplicate(module.name));
        }
        module
            .upcasters
            .check()
            .map_err(|source| ModuleError::Upcaster {
                module: module.name.clone(),
                source,
            })?;
        self.modules.push(module);
        Ok(())
    }

    /// This registry with `module` added.
    pub fn with(mut self, module: Module) -> Result<Self, ModuleError> {
        self.register(module)?;
        Ok(self)
    }

    /// The module called `name`.
    pub fn get(&self, name: &str) -> Option<&Module> {
        self.modules.iter().find(|m| m.name == name)
    }

    /// The module that owns `table` (the only one allowed to write it), if any.
    pub fn owner_of_table(&self, table: &str) -> Option<&Module> {
        self.modules.iter().find(|m| m.owns_table(table))
    }

    /// The modules, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &Module> {
        self.modules.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn same(v: Value) -> Result<Value, String> {
        Ok(v)
    }

    #[test]
    fn shipped_modules_own_their_tables() {
        let registry = ModuleRegistry::shipped();
        let tables: Vec<_> = registry
            .iter()
            .map(|m| (m.name(), m.table_prefix(), m.events_table()))
            .collect();
        assert_eq!(
            tables,
            [
                ("council", "council_", "council_events"),
                ("school", "school_", "school_events"),
                ("kiosk", "kiosk_", "kiosk_events"),
                ("bus", "bus_", "bus_catalog_events"),
            ]
        );
        let owner = |t: &str| registry.owner_of_table(t).map(Module::name);
        assert_eq!(owner("council_proposals"), Some("council"));
        assert_eq!(owner("bus_events"), Some("bus"));
        assert_eq!(owner("bus_catalog_events"), Some("bus"));
        assert_eq!(owner("kiosk_events"), Some("kiosk"));
        assert_eq!(owner("air"), None);
        assert_eq!(owner("council"), None);
        assert_eq!(owner("_checkpoints"), None);
        assert_eq!(owner("schoolbus_x"), None);
    }

    #[test]
    fn extra_modules_are_registered_at_start() {
        let lab = Module::new("lab")
            .unwrap()
            .with_upcaster("LoanOpened", 1, same)
            .unwrap();
        let registry = ModuleRegistry::shipped().with(lab).unwrap();
        assert_eq!(
            registry.owner_of_table("lab_loans").map(Module::name),
            Some("lab")
        );
        let lab = registry.get("lab").unwrap();
        assert_eq!(lab.events_table(), "lab_events");
        assert_eq!(lab.upcasters().current_version("LoanOpened"), 2);
        assert_eq!(
            registry
                .clone()
                .with(Module::new("lab").unwrap())
                .unwrap_err(),
            ModuleError::Duplicate("lab".into())
        );
        let gap = Module::new("gap")
            .unwrap()
            .with_upcaster("T", 2, same)
            .unwrap();
        assert_eq!(
            registry.with(gap).unwrap_err().to_string(),
            "module 'gap': no upcaster for event type 'T' from schema version 1 (current 3)"
        );
    }

    #[test]
    fn bad_modules_are_refused() {
        for name in ["", "Lab", "lab_x", "9lab", "lab-x", &"a".repeat(33)] {
            assert_eq!(
                Module::new(name).unwrap_err(),
                ModuleError::InvalidName(name.into())
            );
        }
        let lab = Module::new("lab").unwrap();
        assert!(lab.clone().with_events_table("events").is_err());
        assert!(lab.clone().with_events_table("lab_").is_err());
        assert!(lab.clone().with_events_table("lab_a/b").is_err());
        assert_eq!(
            lab.with_events_table("lab_log").unwrap().events_table(),
            "lab_log"
        );
    }
}
