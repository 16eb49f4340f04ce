//! The bus's schema registry: a JSON Schema per event type, versioned, checked for
//! compatibility when a new version is registered, and used to validate every published event.
//!
//! The registry is pure in-memory logic. The caller persists its inputs (the registrations and
//! the compatibility changes) as events and replays them on start: registrations with
//! [`SchemaRegistry::restore`] (which does not re-run the compatibility check that was passed
//! when the version was first registered), modes with [`SchemaRegistry::set_compatibility`].
//!
//! # Versions
//!
//! Each event type (the CloudEvents `type`, 1–256 printable characters without whitespace,
//! e.g. `it.prato.school.canteen.MealOrdered`) has versions `1, 2, …`
//! ([`SchemaRegistry::register`], `POST /api/v1/bus/schemas/{type}`). Registering a schema equal
//! (as a JSON value) to the latest version is idempotent: it returns that version and creates
//! nothing, like Confluent's Schema Registry. A schema equal to an *older* version is registered
//! as a new version (after the compatibility check): that is how a producer rolls back.
//!
//! Schemas are JSON Schema (draft 2020-12 unless `$schema` names draft 4, 6, 7 or 2019-09). They
//! must be self-contained: `$ref` may only point inside the schema (`#/$defs/Name`,
//! `#/definitions/Name`, `#`), never to another document, and `$id` is only allowed at the root.
//! A `$ref` cycle that never descends into the data (`{"$ref": "#"}`) is refused. `format` is
//! an assertion: a `"format": "date-time"` property must hold an RFC 3339 date-time.
//!
//! # Compatibility
//!
//! Each event type has a [`Compatibility`] mode (default `BACKWARD`), checked when a new version
//! is registered:
//!
//! | mode | the new schema must… |
//! |---|---|
//! | `BACKWARD` | accept every instance the latest version accepts: consumers on the new schema read old data |
//! | `FORWARD` | only accept instances the latest version accepts: consumers still on the latest version read new data |
//! | `FULL` | both |
//! | `*_TRANSITIVE` | the same against every earlier version, not only the latest |
//! | `NONE` | nothing: any valid schema is accepted |
//!
//! Both directions are the question "is every instance valid under schema A also valid under
//! schema B?" (A ⊆ B): BACKWARD asks old ⊆ new, FORWARD new ⊆ old. [`check_compatibility`]
//! answers it structurally, over the part of JSON Schema that events use:
//!
//! * `type` (a string or an array; `integer` ⊆ `number`): B must allow every type A allows;
//! * `enum`, `const`: when A enumerates its values (also `type` `null`/`boolean` alone) each
//!   value A allows is validated against B; an `enum`/`const` only in B is a narrowing;
//! * `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` (numbers, or draft 4's
//!   booleans), `multipleOf`, `minLength`, `maxLength`, `minItems`, `maxItems`,
//!   `minProperties`, `maxProperties`, `uniqueItems`: B's bounds must be no stricter than A's;
//! * `pattern`, `format`: equal, or absent from B;
//! * `properties`, `required`, `additionalProperties` (a boolean or a schema; absent = `true`),
//!   `patternProperties`: see the content models below; `required` of B must be required by A;
//! * `items` (a schema): A's items ⊆ B's items; tuples (`prefixItems`, `items` as an array,
//!   `additionalItems`) must stay identical;
//! * `$ref` to `#/…` is followed (cycles are handled: a comparison already in progress is
//!   assumed to hold, which is sound for recursive schemas that descend into the data);
//! * `allOf`: A ⊆ every conjunct of B; A ⊆ B when A's conjuncts, merged, are ⊆ B, or one of them is;
//! * `anyOf`/`oneOf`: each branch of A must be ⊆ some branch of B; under B's `oneOf` the branches
//!   must also be provably disjoint (different types, disjoint `enum`/`const`, or a required
//!   property whose values are disjoint — the usual discriminator);
//! * `true`/`false` schemas; annotations (`title`, `description`, `$comment`, `examples`,
//!   `default`, `$id`, `$schema`, `deprecated`, `readOnly`, `writeOnly`, `$defs` containers) and
//!   keywords JSON Schema does not define (e.g. `x-unit`) do not validate and are ignored;
//! * any other validation keyword (`not`, `if`/`then`/`else`, `contains`, `propertyNames`,
//!   `dependentRequired`, `dependentSchemas`, `unevaluatedProperties`, …) must be identical in
//!   both schemas, otherwise the change is reported as "cannot prove compatibility".
//!
//! The check is conservative: it never accepts a change it cannot prove safe, so it can refuse
//! a change that is in fact harmless (then register with mode `NONE`). It reports every
//! incompatible place it finds, each as an [`Incompatibility`] with a JSON Pointer into the
//! *new* schema (the place of the keyword concerned, or where it would be) and a message
//! saying what changed and whose data may stop validating.
//!
//! ## Open and closed content models
//!
//! An object schema without `"additionalProperties": false` has an *open* content model: it
//! accepts properties it does not declare, with any value. That decides what adding or
//! removing a property means, exactly as in Confluent's JSON Schema rules:
//!
//! * **open** old schema, property added with a constraint
//!   (`{"properties": {"a": {"type": "string"}}}` → `{"properties": {"a": {…}, "note":
//!   {"type": "string"}}}`): **not** BACKWARD compatible — data written with the old schema may
//!   already carry `note` with another type (`{"note": 5}`). Adding a property without a
//!   constraint (`"note": {}` or only a `description`) is compatible.
//! * **open** schema, property removed: BACKWARD compatible (the new open schema accepts the
//!   old property with any value), not FORWARD compatible (new data may carry the removed
//!   property with any value, which the old schema refuses).
//! * **closed** old schema (`"additionalProperties": false`), optional property added:
//!   BACKWARD compatible (old data never had it), not FORWARD compatible (the old schema
//!   refuses the new property).
//! * **closed** schema, property removed: not BACKWARD compatible (old data carrying it is
//!   refused), FORWARD compatible.
//! * *partially open* (`patternProperties` plus `"additionalProperties": false`): a new property
//!   whose name matches no pattern behaves as in a closed model; one that matches a pattern must
//!   stay within the pattern's schema.
//!
//! So under BACKWARD, evolve an event by adding optional properties to a closed content model
//! from the first version; under FULL, only properties without constraints can come and go in
//! an open model.
//!
//! Other rules follow from the same subset question: adding a required property breaks
//! BACKWARD, removing one breaks FORWARD; widening `integer` to `number` or adding an `enum`
//! value is BACKWARD compatible but not FORWARD compatible; narrowing is the reverse.
//!
//! # Validation
//!
//! [`SchemaRegistry::validate_event`] validates an event's `data` (absent data validates as
//! JSON `null`) against the version its `dataschema` names, else the latest. `dataschema` may
//! be a version number (`3`), `latest`, a URI ending in `/versions/{n}` (e.g.
//! `https://bus.example/api/v1/bus/schemas/{type}/versions/3`; when the URI names a type under
//! `/schemas/{type}/versions/{n}` it must be the event's type) or carrying `?version={n}`. At
//! most [`MAX_VALIDATION_ISSUES`] issues are listed.
//!
//! # Errors and HTTP statuses
//!
//! [`SchemaError::http_status`] maps errors for the API: an event type with no schema is 422
//! (the event is well formed but cannot be processed until a schema is registered), a
//! `dataschema` naming a missing version is 422, an incompatible schema is 409 (as Confluent's
//! Schema Registry answers), invalid schemas, type names, `dataschema` values and data are 400.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use civiclake_core::CloudEvent;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Longest event type name accepted, in characters (CloudEvents `type`).
pub const MAX_EVENT_TYPE_LEN: usize = 256;

/// Most validation issues reported for one event; further ones are summed up in the last issue.
pub const MAX_VALIDATION_ISSUES: usize = 20;

/// Deepest JSON nesting accepted in a schema document (objects and arrays).
pub const MAX_SCHEMA_DEPTH: usize = 64;

/// Most pairwise comparisons one compatibility check makes before it gives up (and reports
/// that it cannot prove compatibility).
const MAX_CHECK_STEPS: usize = 20_000;

/// Most value pairs one equality test of two subschemas compares.
const MAX_EQUIV_STEPS: usize = 10_000;

/// Longest `$ref` chain followed when looking for reference cycles.
const MAX_REF_CHAIN: usize = 512;

// ---------------------------------------------------------------------------------------------
// Compatibility modes
// ---------------------------------------------------------------------------------------------

/// Which earlier versions a new schema version must be compatible with, and in which direction.
///
/// Written and parsed as `BACKWARD`, `BACKWARD_TRANSITIVE`, `FORWARD`, `FORWARD_TRANSITIVE`,
/// `FULL`, `FULL_TRANSITIVE`, `NONE` (parsing ignores case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compatibility {
    /// Consumers using the new schema can read data written with the latest version.
    #[default]
    Backward,
    /// As [`Compatibility::Backward`], against every earlier version.
    BackwardTransitive,
    /// Consumers using the latest version can read data written with the new schema.
    Forward,
    /// As [`Compatibility::Forward`], against every earlier version.
    ForwardTransitive,
    /// Backward and forward against the latest version.
    Full,
    /// Backward and forward against every earlier version.
    FullTransitive,
    /// No check.
    None,
}

impl Compatibility {
    /// Every mode, in the order of the table in the module documentation.
    pub const ALL: [Compatibility; 7] = [
        Compatibility::Backward,
        Compatibility::BackwardTransitive,
        Compatibility::Forward,
        Compatibility::ForwardTransitive,
        Compatibility::Full,
        Compatibility::FullTransitive,
        Compatibility::None,
    ];

    /// The mode's name, e.g. `BACKWARD_TRANSITIVE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compatibility::Backward => "BACKWARD",
            Compatibility::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Compatibility::Forward => "FORWARD",
            Compatibility::ForwardTransitive => "FORWARD_TRANSITIVE",
            Compatibility::Full => "FULL",
            Compatibility::FullTransitive => "FULL_TRANSITIVE",
            Compatibility::None => "NONE",
        }
    }

    /// Whether the new schema must accept what earlier versions accept.
    pub fn checks_backward(self) -> bool {
        matches!(
            self,
            Compatibility::Backward
                | Compatibility::BackwardTransitive
                | Compatibility::Full
                | Compatibility::FullTransitive
        )
    }

    /// Whether earlier versions must accept what the new schema accepts.
    pub fn checks_forward(self) -> bool {
        matches!(
            self,
            Compatibility::Forward
                | Compatibility::ForwardTransitive
                | Compatibility::Full
                | Compatibility::FullTransitive
        )
    }

    /// Whether every earlier version is checked, not only the latest.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            Compatibility::BackwardTransitive
                | Compatibility::ForwardTransitive
                | Compatibility::FullTransitive
        )
    }
}

impl fmt::Display for Compatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A compatibility mode name that is not one of [`Compatibility::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown compatibility mode {0:?}: expected one of BACKWARD, BACKWARD_TRANSITIVE, FORWARD, \
     FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE, NONE"
)]
pub struct UnknownCompatibility(pub String);

impl FromStr for Compatibility {
    type Err = UnknownCompatibility;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim();
        Compatibility::ALL
            .into_iter()
            .find(|mode| mode.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| UnknownCompatibility(s.to_owned()))
    }
}

impl Serialize for Compatibility {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Compatibility {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------------------------

/// One reason a new schema is not compatible with an earlier version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incompatibility {
    /// The earlier version the new schema was compared with.
    pub against_version: u32,
    /// JSON Pointer into the new schema: the keyword concerned (e.g.
    /// `/properties/amount/type`), or where it would be when the new schema lacks it.
    /// Through a `$ref` the pointer continues at the referenced definition.
    pub path: String,
    /// What changed and whose data may stop validating.
    pub message: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", display_pointer(&self.path), self.message)
    }
}

/// One reason event data does not match its schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationIssue {
    /// JSON Pointer to the offending value in the data, `""` for the data itself.
    pub instance_path: String,
    /// JSON Pointer to the schema keyword that refused it (`""` for the summary of issues
    /// beyond [`MAX_VALIDATION_ISSUES`]).
    pub schema_path: String,
    /// What is wrong, e.g. `1.5 is not of type "integer"`.
    pub message: String,
}

impl fmt::Display for ValidationIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            display_pointer(&self.instance_path),
            self.message
        )
    }
}

/// What went wrong in the schema registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The event type name is not a valid CloudEvents `type`.
    #[error("invalid event type {}: {reason}", short(event_type))]
    InvalidEventType {
        /// The name given.
        event_type: String,
        /// Why it is refused.
        reason: String,
    },
    /// The schema is not a usable JSON Schema.
    #[error("invalid JSON Schema: {reason}")]
    Invalid {
        /// Why, with the place in the schema when known.
        reason: String,
    },
    /// The schema breaks the event type's compatibility mode.
    #[error("{}", incompatible_text(.event_type, *.mode, .against_versions, .issues))]
    Incompatible {
        /// The event type.
        event_type: String,
        /// Its compatibility mode.
        mode: Compatibility,
        /// The earlier versions the new schema is incompatible with, ascending.
        against_versions: Vec<u32>,
        /// Every incompatibility found.
        issues: Vec<Incompatibility>,
    },
    /// No schema is registered for the event type.
    #[error(
        "no schema is registered for event type {quoted}: register one with \
         POST /api/v1/bus/schemas/{name} (the JSON Schema as the body) before publishing \
         events of this type",
        quoted = short(.0),
        name = .0
    )]
    UnknownType(String),
    /// The event's `dataschema` names a version that does not exist.
    #[error(
        "event type {} has no schema version {version} (the latest is {latest}); \
         fix the event's dataschema or leave it out to validate against the latest version",
        short(event_type)
    )]
    UnknownVersion {
        /// The event type.
        event_type: String,
        /// The version asked for.
        version: u32,
        /// The latest version.
        latest: u32,
    },
    /// The event's `dataschema` cannot be read as a version of its type's schema.
    #[error(
        "dataschema {} of event type {} is not understood: {reason}; the bus accepts a version \
         number (3), \"latest\", a URI ending in /versions/{{n}} (e.g. \
         /api/v1/bus/schemas/{{type}}/versions/3) or carrying ?version={{n}}, or no dataschema \
         for the latest version",
        short(dataschema),
        short(event_type)
    )]
    InvalidDataschema {
        /// The event type.
        event_type: String,
        /// The `dataschema` attribute.
        dataschema: String,
        /// Why it is not understood.
        reason: String,
    },
    /// The event's data does not match the schema.
    #[error(
        "event data does not match version {version} of the schema of event type {}: {}",
        short(event_type),
        join_issues(.issues)
    )]
    Validation {
        /// The event type.
        event_type: String,
        /// The schema version used.
        version: u32,
        /// What is wrong, at most [`MAX_VALIDATION_ISSUES`].
        issues: Vec<ValidationIssue>,
    },
}

impl SchemaError {
    /// The HTTP status the API answers with: 422 for an event type without a schema and for a
    /// `dataschema` naming a missing version, 409 for an incompatible schema (as Confluent's
    /// Schema Registry), 400 for everything else (invalid schema, type name, `dataschema`,
    /// data).
    pub fn http_status(&self) -> u16 {
        match self {
            SchemaError::UnknownType(_) | SchemaError::UnknownVersion { .. } => 422,
            SchemaError::Incompatible { .. } => 409,
            SchemaError::InvalidEventType { .. }
            | SchemaError::Invalid { .. }
            | SchemaError::InvalidDataschema { .. }
            | SchemaError::Validation { .. } => 400,
        }
    }
}

fn incompatible_text(
    event_type: &str,
    mode: Compatibility,
    against: &[u32],
    issues: &[Incompatibility],
) -> String {
    let versions = against
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let plural = if against.len() == 1 { "" } else { "s" };
    let mut text = format!(
        "the new schema of event type {} is not {mode} compatible with version{plural} \
         {versions}: ",
        short(event_type)
    );
    const SHOWN: usize = 10;
    let listed = issues
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    text.push_str(&listed);
    if issues.len() > SHOWN {
        text.push_str(&format!("; and {} more", issues.len() - SHOWN));
    }
    text
}

fn join_issues(issues: &[ValidationIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn display_pointer(pointer: &str) -> &str {
    if pointer.is_empty() {
        "(root)"
    } else {
        pointer
    }
}

/// `s` quoted, cut to 80 characters.
fn short(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut:?}…")
    }
}

/// `text` cut to `max` characters.
fn truncate(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        text
    } else {
        let mut cut: String = text.chars().take(max).collect();
        cut.push('…');
        cut
    }
}

// ---------------------------------------------------------------------------------------------
// Event type names
// ---------------------------------------------------------------------------------------------

/// Checks an event type name: the CloudEvents `type`, 1–[`MAX_EVENT_TYPE_LEN`] characters,
/// no whitespace and no control characters (e.g. `it.prato.school.canteen.MealOrdered`).
pub fn validate_event_type(event_type: &str) -> Result<(), SchemaError> {
    let refuse = |reason: String| {
        Err(SchemaError::InvalidEventType {
            event_type: event_type.to_owned(),
            reason,
        })
    };
    let len = event_type.chars().count();
    if len == 0 {
        return refuse("the name is empty".to_owned());
    }
    if len > MAX_EVENT_TYPE_LEN {
        return refuse(format!(
            "the name is {len} characters long, at most {MAX_EVENT_TYPE_LEN} are allowed"
        ));
    }
    if let Some((at, c)) = event_type
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_whitespace() || c.is_control())
    {
        return refuse(format!(
            "character {} ({c:?}) is whitespace or a control character; use a reverse-DNS \
             name such as it.prato.school.canteen.MealOrdered",
            at + 1
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Compiled schemas
// ---------------------------------------------------------------------------------------------

/// A JSON Schema checked and compiled for validation.
#[derive(Clone)]
pub struct CompiledSchema {
    validator: jsonschema::Validator,
}

impl fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledSchema")
            .field("draft", &self.validator.draft())
            .finish_non_exhaustive()
    }
}

fn validation_options() -> jsonschema::ValidationOptions<'static> {
    jsonschema::options()
        .offline()
        .should_validate_formats(true)
}

impl CompiledSchema {
    /// Checks and compiles `schema`. Refuses what is not an object or a boolean, what is not
    /// valid against its draft's meta-schema, a `$ref` that does not point inside the schema
    /// (or to an anchor), `$id` below the root, a `$ref` cycle that never descends into the
    /// data, and nesting deeper than [`MAX_SCHEMA_DEPTH`].
    pub fn compile(schema: &Value) -> Result<CompiledSchema, SchemaError> {
        check_structure(schema)?;
        let validator = validation_options().build(schema).map_err(|e| {
            let at = e.instance_path().to_string();
            let what = truncate(e.to_string(), 300);
            SchemaError::Invalid {
                reason: if at.is_empty() {
                    what
                } else {
                    format!("at {at}: {what}")
                },
            }
        })?;
        Ok(CompiledSchema { validator })
    }

    /// Whether `data` matches the schema.
    pub fn is_valid(&self, data: &Value) -> bool {
        self.validator.is_valid(data)
    }

    /// Validates `data`, listing every issue (at most [`MAX_VALIDATION_ISSUES`]; when there
    /// are more, the last entry says how many were left out).
    pub fn validate(&self, data: &Value) -> Result<(), Vec<ValidationIssue>> {
        if self.validator.is_valid(data) {
            return Ok(());
        }
        let mut issues = Vec::new();
        let mut left_out = 0usize;
        for error in self.validator.iter_errors(data) {
            if issues.len() < MAX_VALIDATION_ISSUES {
                issues.push(ValidationIssue {
                    instance_path: error.instance_path().to_string(),
                    schema_path: error.schema_path().to_string(),
                    message: truncate(error.to_string(), 300),
                });
            } else {
                left_out += 1;
            }
        }
        if issues.is_empty() {
            return Ok(());
        }
        if left_out > 0 {
            issues.pop();
            issues.push(ValidationIssue {
                instance_path: String::new(),
                schema_path: String::new(),
                message: format!("{} more validation errors not listed", left_out + 1),
            });
        }
        Err(issues)
    }
}

// ---------------------------------------------------------------------------------------------
// The registry
// ---------------------------------------------------------------------------------------------

/// One registered version of an event type's schema.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaVersion {
    /// 1 for the first version of the type, then 2, 3, …
    pub version: u32,
    /// The JSON Schema as registered.
    pub schema: Value,
    /// When it was registered, in microseconds since the epoch (UTC).
    pub registered_micros: i64,
    #[serde(skip)]
    compiled: CompiledSchema,
}

impl SchemaVersion {
    /// The compiled schema, for validating data.
    pub fn compiled(&self) -> &CompiledSchema {
        &self.compiled
    }
}

/// What [`SchemaRegistry::register`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Registered {
    /// The version the schema has.
    pub version: u32,
    /// False when the schema equals the latest version, which is returned unchanged.
    pub created: bool,
}

#[derive(Debug, Clone, Default)]
struct Subject {
    mode: Option<Compatibility>,
    versions: Vec<SchemaVersion>,
}

/// The schemas of the bus's event types, with their versions and compatibility modes.
/// Cloning is cheap enough for copy-on-write: compiled validators are shared.
#[derive(Debug, Clone, Default)]
pub struct SchemaRegistry {
    subjects: BTreeMap<String, Subject>,
}

static NULL: Value = Value::Null;

impl SchemaRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `schema` as the next version of `event_type`'s schema after checking it
    /// against the type's compatibility mode. A schema equal to the latest version returns that
    /// version with `created: false`.
    ///
    /// Errors: [`SchemaError::InvalidEventType`], [`SchemaError::Invalid`],
    /// [`SchemaError::Incompatible`].
    pub fn register(
        &mut self,
        event_type: &str,
        schema: Value,
        now_micros: i64,
    ) -> Result<Registered, SchemaError> {
        self.add(event_type, schema, now_micros, true)
    }

    /// Registers `schema` as [`SchemaRegistry::register`] does but without the compatibility
    /// check: for replaying registrations that passed it when they were first made (the rules
    /// or the mode may have changed since).
    pub fn restore(
        &mut self,
        event_type: &str,
        schema: Value,
        registered_micros: i64,
    ) -> Result<Registered, SchemaError> {
        self.add(event_type, schema, registered_micros, false)
    }

    /// Whether `schema` could be registered as the next version of `event_type` (checks the
    /// name, the schema and the compatibility mode, registers nothing).
    pub fn check(&self, event_type: &str, schema: &Value) -> Result<(), SchemaError> {
        validate_event_type(event_type)?;
        CompiledSchema::compile(schema)?;
        if self
            .latest(event_type)
            .is_some_and(|latest| latest.schema == *schema)
        {
            return Ok(());
        }
        self.check_against(event_type, schema)
    }

    fn check_against(&self, event_type: &str, schema: &Value) -> Result<(), SchemaError> {
        let mode = self.compatibility(event_type);
        let previous = self.versions(event_type).unwrap_or_default();
        let issues = compatibility_issues(
            mode,
            previous.iter().map(|v| (v.version, &v.schema)),
            schema,
        );
        if issues.is_empty() {
            return Ok(());
        }
        let against_versions: Vec<u32> = issues
            .iter()
            .map(|i| i.against_version)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        Err(SchemaError::Incompatible {
            event_type: event_type.to_owned(),
            mode,
            against_versions,
            issues,
        })
    }

    fn add(
        &mut self,
        event_type: &str,
        schema: Value,
        micros: i64,
        check: bool,
    ) -> Result<Registered, SchemaError> {
        validate_event_type(event_type)?;
        if let Some(latest) = self.latest(event_type)
            && latest.schema == schema
        {
            return Ok(Registered {
                version: latest.version,
                created: false,
            });
        }
        let compiled = CompiledSchema::compile(&schema)?;
        if check {
            self.check_against(event_type, &schema)?;
        }
        let subject = self.subjects.entry(event_type.to_owned()).or_default();
        let version =
            u32::try_from(subject.versions.len() + 1).map_err(|_| SchemaError::Invalid {
                reason: format!("event type {} has too many versions", short(event_type)),
            })?;
        subject.versions.push(SchemaVersion {
            version,
            schema,
            registered_micros: micros,
            compiled,
        });
        Ok(Registered {
            version,
            created: true,
        })
    }

    /// Sets `event_type`'s compatibility mode (also before its first version). It applies to
    /// the versions registered from now on.
    pub fn set_compatibility(
        &mut self,
        event_type: &str,
        mode: Compatibility,
    ) -> Result<(), SchemaError> {
        validate_event_type(event_type)?;
        self.subjects.entry(event_type.to_owned()).or_default().mode = Some(mode);
        Ok(())
    }

    /// `event_type`'s compatibility mode: the one set, else [`Compatibility::Backward`].
    pub fn compatibility(&self, event_type: &str) -> Compatibility {
        self.subjects
            .get(event_type)
            .and_then(|s| s.mode)
            .unwrap_or_default()
    }

    /// The versions of `event_type`'s schema, oldest first; `None` when it has none.
    pub fn versions(&self, event_type: &str) -> Option<&[SchemaVersion]> {
        self.subjects
            .get(event_type)
            .map(|s| s.versions.as_slice())
            .filter(|v| !v.is_empty())
    }

    /// One version of `event_type`'s schema.
    pub fn get(&self, event_type: &str, version: u32) -> Option<&SchemaVersion> {
        let index = usize::try_from(version).ok()?.checked_sub(1)?;
        self.versions(event_type)?.get(index)
    }

    /// The latest version of `event_type`'s schema.
    pub fn latest(&self, event_type: &str) -> Option<&SchemaVersion> {
        self.versions(event_type)?.last()
    }

    /// The event types with at least one schema version, sorted.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.subjects
            .iter()
            .filter(|(_, s)| !s.versions.is_empty())
            .map(|(name, _)| name.as_str())
    }

    /// Validates an event's data against its type's schema: the version `dataschema` names
    /// (see the module documentation for the forms accepted), else the latest. Absent data
    /// validates as JSON `null`. Returns the version used.
    ///
    /// Errors: [`SchemaError::UnknownType`] (no schema for the type, 422),
    /// [`SchemaError::InvalidDataschema`], [`SchemaError::UnknownVersion`],
    /// [`SchemaError::Validation`].
    pub fn validate_event(
        &self,
        event_type: &str,
        dataschema: Option<&str>,
        data: Option<&Value>,
    ) -> Result<u32, SchemaError> {
        let Some(versions) = self.versions(event_type) else {
            return Err(SchemaError::UnknownType(event_type.to_owned()));
        };
        let latest = versions.len();
        let wanted = match dataschema {
            Some(dataschema) => parse_dataschema(event_type, dataschema)?,
            None => None,
        };
        let chosen = match wanted {
            None => versions.last(),
            Some(version) => usize::try_from(version)
                .ok()
                .and_then(|v| v.checked_sub(1))
                .and_then(|index| versions.get(index)),
        };
        let Some(chosen) = chosen else {
            return Err(SchemaError::UnknownVersion {
                event_type: event_type.to_owned(),
                version: wanted.unwrap_or_default(),
                latest: u32::try_from(latest).unwrap_or(u32::MAX),
            });
        };
        chosen
            .compiled
            .validate(data.unwrap_or(&NULL))
            .map_err(|issues| SchemaError::Validation {
                event_type: event_type.to_owned(),
                version: chosen.version,
                issues,
            })?;
        Ok(chosen.version)
    }

    /// [`SchemaRegistry::validate_event`] with the event's `type`, `dataschema` and `data`.
    pub fn validate_cloud_event(&self, event: &CloudEvent) -> Result<u32, SchemaError> {
        self.validate_event(&event.ty, event.dataschema.as_deref(), event.data.as_ref())
    }
}

/// The version a `dataschema` attribute names: `Ok(None)` for the latest.
fn parse_dataschema(event_type: &str, dataschema: &str) -> Result<Option<u32>, SchemaError> {
    let refuse = |reason: String| SchemaError::InvalidDataschema {
        event_type: event_type.to_owned(),
        dataschema: dataschema.to_owned(),
        reason,
    };
    let version = |text: &str| -> Result<Option<u32>, SchemaError> {
        if text.eq_ignore_ascii_case("latest") {
            return Ok(None);
        }
        match text.parse::<u32>() {
            Ok(n) if n >= 1 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(n)),
            _ => Err(refuse(format!(
                "{} is not a version number (1, 2, …)",
                short(text)
            ))),
        }
    };
    let text = dataschema.trim();
    let text = text.split_once('#').map_or(text, |(before, _)| before);
    let (path, query) = match text.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (text, None),
    };
    if let Some(query) = query {
        for pair in query.split('&') {
            if let Some(v) = pair.strip_prefix("version=") {
                return version(v);
            }
        }
    }
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        return Err(refuse("it is empty".to_owned()));
    }
    let segments: Vec<&str> = path.split('/').collect();
    let n = segments.len();
    if n == 1 {
        return version(segments[0]);
    }
    if segments[n - 2] == "versions" {
        if n >= 4 && segments[n - 4] == "schemas" {
            let named = percent_decode(segments[n - 3]);
            if named != event_type {
                return Err(refuse(format!(
                    "it names the schema of event type {}",
                    short(&named)
                )));
            }
        }
        return version(segments[n - 1]);
    }
    Err(refuse(
        "it names no version of the type's schema".to_owned(),
    ))
}

/// `text` with `%XX` escapes decoded (invalid escapes are kept as they are).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(hex) = std::str::from_utf8(hex)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Schema structure: what `compile` refuses before the validator sees the schema
// ---------------------------------------------------------------------------------------------

/// Keywords whose value is one subschema.
const SINGLE_SUBSCHEMA: [&str; 12] = [
    "additionalProperties",
    "additionalItems",
    "items",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contentSchema",
];

/// Keywords whose value is an array of subschemas.
const ARRAY_SUBSCHEMAS: [&str; 5] = ["allOf", "anyOf", "oneOf", "prefixItems", "items"];

/// Keywords whose value maps names to subschemas.
const MAP_SUBSCHEMAS: [&str; 6] = [
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
    "dependencies",
];

/// Every keyword of JSON Schema (drafts 4 to 2020-12) that takes part in validation. Other
/// keywords are annotations or unknown, and validate nothing.
const CONSTRAINT_KEYWORDS: [&str; 46] = [
    "type",
    "enum",
    "const",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "format",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxContains",
    "minContains",
    "contains",
    "maxProperties",
    "minProperties",
    "required",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "properties",
    "patternProperties",
    "additionalProperties",
    "propertyNames",
    "unevaluatedProperties",
    "items",
    "prefixItems",
    "additionalItems",
    "unevaluatedItems",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "$ref",
    "$dynamicRef",
    "$recursiveRef",
    "contentMediaType",
    "contentEncoding",
    "contentSchema",
];

fn is_constraint_keyword(keyword: &str) -> bool {
    CONSTRAINT_KEYWORDS.contains(&keyword)
}

/// Escapes a name for a JSON Pointer segment.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Nesting depth of `value`, counted up to `cap`.
fn json_depth(value: &Value, cap: usize) -> usize {
    if cap == 0 {
        return 0;
    }
    match value {
        Value::Array(items) => {
            1 + items
                .iter()
                .map(|v| json_depth(v, cap - 1))
                .max()
                .unwrap_or(0)
        }
        Value::Object(map) => {
            1 + map
                .values()
                .map(|v| json_depth(v, cap - 1))
                .max()
                .unwrap_or(0)
        }
        _ => 0,
    }
}

/// Calls `f` on every subschema of `schema` (itself included) with its JSON Pointer.
fn walk_subschemas<'v>(schema: &'v Value, pointer: &str, f: &mut dyn FnMut(&str, &'v Value)) {
    f(pointer, schema);
    let Value::Object(map) = schema else {
        return;
    };
    for (keyword, value) in map {
        let here = format!("{pointer}/{}", escape(keyword));
        if SINGLE_SUBSCHEMA.contains(&keyword.as_str())
            && matches!(value, Value::Object(_) | Value::Bool(_))
        {
            walk_subschemas(value, &here, f);
        }
        if ARRAY_SUBSCHEMAS.contains(&keyword.as_str())
            && let Value::Array(items) = value
        {
            for (i, item) in items.iter().enumerate() {
                walk_subschemas(item, &format!("{here}/{i}"), f);
            }
        }
        if MAP_SUBSCHEMAS.contains(&keyword.as_str())
            && let Value::Object(entries) = value
        {
            for (name, item) in entries {
                if matches!(item, Value::Object(_) | Value::Bool(_)) {
                    walk_subschemas(item, &format!("{here}/{}", escape(name)), f);
                }
            }
        }
    }
}

/// Resolves a local reference (`#`, `#/json/pointer`, percent-encoded or not) in `doc`.
fn resolve_ref<'d>(doc: &'d Value, reference: &str) -> Option<(&'d Value, String)> {
    let fragment = percent_decode(reference.strip_prefix('#')?);
    if fragment.is_empty() {
        return Some((doc, String::new()));
    }
    if !fragment.starts_with('/') {
        return None;
    }
    doc.pointer(&fragment).map(|target| (target, fragment))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_structure(schema: &Value) -> Result<(), SchemaError> {
    let invalid = |reason: String| Err(SchemaError::Invalid { reason });
    if !matches!(schema, Value::Object(_) | Value::Bool(_)) {
        return invalid(format!(
            "a JSON Schema is an object or a boolean, not {}",
            kind_of(schema)
        ));
    }
    if json_depth(schema, MAX_SCHEMA_DEPTH + 1) > MAX_SCHEMA_DEPTH {
        return invalid(format!(
            "the schema nests deeper than {MAX_SCHEMA_DEPTH} levels"
        ));
    }
    let mut problem: Option<String> = None;
    let mut pointers: Vec<String> = Vec::new();
    walk_subschemas(schema, "", &mut |pointer, node| {
        pointers.push(pointer.to_owned());
        if problem.is_some() {
            return;
        }
        let Value::Object(map) = node else {
            return;
        };
        for keyword in ["$ref", "$dynamicRef", "$recursiveRef"] {
            let Some(reference) = map.get(keyword).and_then(Value::as_str) else {
                continue;
            };
            let at = display_pointer(pointer);
            if !reference.starts_with('#') {
                problem = Some(format!(
                    "{keyword} {} at {at} refers to another document; the bus only follows \
                     references inside the schema: copy the referenced schema under \"$defs\" \
                     and refer to it as \"#/$defs/Name\"",
                    short(reference)
                ));
            } else if keyword == "$ref" && reference.len() > 1 && !reference.starts_with("#/") {
                problem = Some(format!(
                    "$ref {} at {at} refers to an anchor; use a JSON Pointer such as \
                     \"#/$defs/Name\"",
                    short(reference)
                ));
            }
        }
        if !pointer.is_empty() && (map.contains_key("$id")) {
            problem = Some(format!(
                "$id at {pointer} embeds another schema resource, which the bus does not \
                 support; keep $id at the root and put shared schemas under \"$defs\""
            ));
        }
    });
    if let Some(problem) = problem {
        return invalid(problem);
    }
    if let Some(cycle) = find_ref_cycle(schema, &pointers) {
        return invalid(cycle);
    }
    Ok(())
}

/// The subschemas applied to the same instance as the schema at `pointer` (not to a part of
/// it): following only these forever never ends.
fn same_instance_edges(doc: &Value, node: &Value, pointer: &str) -> Vec<String> {
    let mut edges = Vec::new();
    let Value::Object(map) = node else {
        return edges;
    };
    if let Some(reference) = map.get("$ref").and_then(Value::as_str)
        && let Some((_, target)) = resolve_ref(doc, reference)
    {
        edges.push(target);
    }
    for keyword in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(items)) = map.get(keyword) {
            edges.extend((0..items.len()).map(|i| format!("{pointer}/{keyword}/{i}")));
        }
    }
    for keyword in ["not", "if", "then", "else"] {
        if map.get(keyword).is_some_and(|v| v.is_object()) {
            edges.push(format!("{pointer}/{keyword}"));
        }
    }
    for keyword in ["dependentSchemas", "dependencies"] {
        if let Some(Value::Object(entries)) = map.get(keyword) {
            for (name, value) in entries {
                if value.is_object() {
                    edges.push(format!("{pointer}/{keyword}/{}", escape(name)));
                }
            }
        }
    }
    edges
}

/// A description of a `$ref` cycle that never descends into the data, if `doc` has one.
fn find_ref_cycle(doc: &Value, pointers: &[String]) -> Option<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        OnPath,
        Done,
    }
    fn visit(
        doc: &Value,
        pointer: &str,
        state: &mut HashMap<String, State>,
        path: &mut Vec<String>,
    ) -> Option<String> {
        match state.get(pointer) {
            Some(State::Done) => return None,
            Some(State::OnPath) => {
                let start = path.iter().position(|p| p == pointer).unwrap_or(0);
                let mut cycle: Vec<String> =
                    path[start..].iter().map(|p| format!("#{p}")).collect();
                cycle.push(format!("#{pointer}"));
                return Some(format!(
                    "$ref cycle that never descends into the data: {}; a schema may only \
                     refer to itself inside properties, items or similar keywords",
                    cycle.join(" → ")
                ));
            }
            None => {}
        }
        if path.len() >= MAX_REF_CHAIN {
            return Some(format!(
                "chain of $ref and allOf/anyOf/oneOf longer than {MAX_REF_CHAIN} at #{pointer}"
            ));
        }
        let node = doc.pointer(pointer)?;
        state.insert(pointer.to_owned(), State::OnPath);
        path.push(pointer.to_owned());
        for edge in same_instance_edges(doc, node, pointer) {
            if let Some(cycle) = visit(doc, &edge, state, path) {
                return Some(cycle);
            }
        }
        path.pop();
        state.insert(pointer.to_owned(), State::Done);
        None
    }
    let mut state = HashMap::new();
    let mut path = Vec::new();
    for pointer in pointers {
        if let Some(cycle) = visit(doc, pointer, &mut state, &mut path) {
            return Some(cycle);
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Compatibility checking: is every instance valid under schema A valid under schema B?
// ---------------------------------------------------------------------------------------------

/// Checks `candidate` against earlier versions of a schema, `previous[0]` being version 1,
/// with the rules of the module documentation. Returns every incompatibility found (empty when
/// compatible, and always for [`Compatibility::None`] or no previous version).
pub fn check_compatibility(
    mode: Compatibility,
    previous: &[Value],
    candidate: &Value,
) -> Vec<Incompatibility> {
    compatibility_issues(
        mode,
        previous
            .iter()
            .enumerate()
            .map(|(i, schema)| (u32::try_from(i + 1).unwrap_or(u32::MAX), schema)),
        candidate,
    )
}

fn compatibility_issues<'v>(
    mode: Compatibility,
    previous: impl ExactSizeIterator<Item = (u32, &'v Value)>,
    candidate: &Value,
) -> Vec<Incompatibility> {
    if mode == Compatibility::None {
        return Vec::new();
    }
    let count = previous.len();
    let skip = if mode.is_transitive() {
        0
    } else {
        count.saturating_sub(1)
    };
    let mut issues = Vec::new();
    for (version, old) in previous.skip(skip) {
        if mode.checks_backward() {
            issues.extend(subset_issues(old, candidate, Dir::Backward, version));
        }
        if mode.checks_forward() {
            issues.extend(subset_issues(candidate, old, Dir::Forward, version));
        }
    }
    issues
}

/// Which way a subset check goes: `Backward` compares old (A) ⊆ new (B), `Forward` new (A) ⊆
/// old (B).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Backward,
    Forward,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

/// One incompatibility before the consequence is added to its message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Finding {
    path: String,
    what: String,
}

fn push_finding(out: &mut Vec<Finding>, finding: Finding) {
    if !out.contains(&finding) {
        out.push(finding);
    }
}

fn is_legacy_draft(doc: &Value) -> bool {
    doc.get("$schema").and_then(Value::as_str).is_some_and(|s| {
        ["draft-03", "draft-04", "draft-06", "draft-07"]
            .iter()
            .any(|d| s.contains(d))
    })
}

fn subset_issues(a_doc: &Value, b_doc: &Value, dir: Dir, version: u32) -> Vec<Incompatibility> {
    let mut checker = Checker {
        a_doc,
        b_doc,
        a_legacy: is_legacy_draft(a_doc),
        b_legacy: is_legacy_draft(b_doc),
        dir,
        version,
        assumed: Vec::new(),
        steps: 0,
        exhausted: false,
        maps: [None, None],
        patterns: HashMap::new(),
    };
    let mut findings = Vec::new();
    if json_depth(a_doc, MAX_SCHEMA_DEPTH + 1) > MAX_SCHEMA_DEPTH
        || json_depth(b_doc, MAX_SCHEMA_DEPTH + 1) > MAX_SCHEMA_DEPTH
    {
        findings.push(Finding {
            path: String::new(),
            what: format!(
                "cannot prove compatibility: a schema nests deeper than {MAX_SCHEMA_DEPTH} levels"
            ),
        });
    } else {
        checker.sub(Node::root(a_doc), Node::root(b_doc), 0, &mut findings);
    }
    if checker.exhausted {
        push_finding(
            &mut findings,
            Finding {
                path: String::new(),
                what: exhausted_finding(),
            },
        );
    }
    let consequence = checker.consequence();
    findings
        .into_iter()
        .map(|f| Incompatibility {
            against_version: version,
            path: f.path,
            message: format!("{}: {consequence}", f.what),
        })
        .collect()
}

fn exhausted_finding() -> String {
    format!(
        "cannot prove compatibility: the schemas are too complex to compare (more than \
         {MAX_CHECK_STEPS} comparisons)"
    )
}

static TRUE: Value = Value::Bool(true);

const SKIP_REF: u8 = 1;
const SKIP_ALLOF: u8 = 2;
const SKIP_ANYOF: u8 = 4;
const SKIP_ONEOF: u8 = 8;

fn skip_flag(keyword: &str) -> u8 {
    match keyword {
        "$ref" => SKIP_REF,
        "allOf" => SKIP_ALLOF,
        "anyOf" => SKIP_ANYOF,
        "oneOf" => SKIP_ONEOF,
        _ => 0,
    }
}

/// A subschema under comparison: its value (borrowed from its document, or built by merging
/// conjuncts), its JSON Pointer in its document, and keywords already taken care of.
#[derive(Debug, Clone)]
struct Node<'a> {
    v: Cow<'a, Value>,
    ptr: String,
    skip: u8,
}

enum Seg<'s> {
    Key(&'s str),
    Idx(usize),
}

impl<'a> Node<'a> {
    fn root(v: &'a Value) -> Self {
        Node {
            v: Cow::Borrowed(v),
            ptr: String::new(),
            skip: 0,
        }
    }

    fn truth(ptr: String) -> Self {
        Node {
            v: Cow::Borrowed(&TRUE),
            ptr,
            skip: 0,
        }
    }

    fn borrowed(&self) -> bool {
        matches!(self.v, Cow::Borrowed(_))
    }

    /// Whether the node is a subschema of its document as it stands there.
    fn real(&self) -> bool {
        self.borrowed() && self.skip == 0
    }

    fn get(&self, keyword: &str) -> Option<&Value> {
        if self.skip & skip_flag(keyword) != 0 {
            return None;
        }
        self.v.as_object()?.get(keyword)
    }

    fn has(&self, keyword: &str) -> bool {
        self.get(keyword).is_some()
    }

    fn keys(&self) -> Vec<&str> {
        match self.v.as_object() {
            Some(map) => map
                .keys()
                .map(String::as_str)
                .filter(|k| self.skip & skip_flag(k) == 0)
                .collect(),
            None => Vec::new(),
        }
    }

    fn with_skip(&self, flags: u8) -> Self {
        Node {
            v: self.v.clone(),
            ptr: self.ptr.clone(),
            skip: self.skip | flags,
        }
    }

    fn is_false(&self) -> bool {
        matches!(*self.v, Value::Bool(false))
    }

    /// Whether the node constrains anything (`true`, `{}` and annotations alone do not).
    fn has_constraints(&self) -> bool {
        match &*self.v {
            Value::Bool(b) => !b,
            Value::Object(_) => self.keys().iter().any(|k| is_constraint_keyword(k)),
            _ => true,
        }
    }

    fn child(&self, segs: &[Seg<'_>]) -> Option<Node<'a>> {
        let mut ptr = self.ptr.clone();
        for seg in segs {
            ptr.push('/');
            match seg {
                Seg::Key(k) => ptr.push_str(&escape(k)),
                Seg::Idx(i) => ptr.push_str(&i.to_string()),
            }
        }
        if let Some(Seg::Key(first)) = segs.first()
            && self.skip & skip_flag(first) != 0
        {
            return None;
        }
        fn step<'x>(value: &'x Value, seg: &Seg<'_>) -> Option<&'x Value> {
            match seg {
                Seg::Key(k) => value.as_object()?.get(*k),
                Seg::Idx(i) => value.as_array()?.get(*i),
            }
        }
        let v = match &self.v {
            Cow::Borrowed(value) => {
                let mut current: &'a Value = value;
                for seg in segs {
                    current = step(current, seg)?;
                }
                Cow::Borrowed(current)
            }
            Cow::Owned(value) => {
                let mut current: &Value = value;
                for seg in segs {
                    current = step(current, seg)?;
                }
                Cow::Owned(current.clone())
            }
        };
        Some(Node { v, ptr, skip: 0 })
    }

    fn field(&self, keyword: &str) -> Option<Node<'a>> {
        self.child(&[Seg::Key(keyword)])
    }

    fn field_or_true(&self, keyword: &str) -> Node<'a> {
        self.field(keyword)
            .unwrap_or_else(|| Node::truth(format!("{}/{}", self.ptr, escape(keyword))))
    }

    /// The node as a standalone value, without the keywords already taken care of.
    fn standalone(&self) -> Value {
        match &*self.v {
            Value::Object(map) if self.skip != 0 => Value::Object(
                map.iter()
                    .filter(|(k, _)| self.skip & skip_flag(k) == 0)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// JSON types as `type` names them; `Number` includes `Integer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum JType {
    Null,
    Boolean,
    Object,
    Array,
    Number,
    Integer,
    String,
}

const ANY_TYPE: [JType; 6] = [
    JType::Null,
    JType::Boolean,
    JType::Object,
    JType::Array,
    JType::Number,
    JType::String,
];

impl JType {
    fn parse(name: &str) -> Option<JType> {
        Some(match name {
            "null" => JType::Null,
            "boolean" => JType::Boolean,
            "object" => JType::Object,
            "array" => JType::Array,
            "number" => JType::Number,
            "integer" => JType::Integer,
            "string" => JType::String,
            _ => return None,
        })
    }
}

/// The types a node's `type` allows, `None` when it has no `type`.
fn type_set(node: &Node<'_>) -> Option<Vec<JType>> {
    match node.get("type")? {
        Value::String(name) => Some(JType::parse(name).into_iter().collect()),
        Value::Array(names) => Some(
            names
                .iter()
                .filter_map(Value::as_str)
                .filter_map(JType::parse)
                .collect(),
        ),
        _ => None,
    }
}

/// Whether type set `within` allows every value of type `t`.
fn covers(within: &[JType], t: JType) -> bool {
    within.contains(&t) || (t == JType::Integer && within.contains(&JType::Number))
}

fn types_cover(within: Option<&[JType]>, types: Option<&[JType]>) -> bool {
    match within {
        None => true,
        Some(within) => types
            .unwrap_or(&ANY_TYPE)
            .iter()
            .all(|t| covers(within, *t)),
    }
}

fn types_overlap(x: &[JType], y: &[JType]) -> bool {
    x.iter()
        .any(|t| covers(y, *t) || y.iter().any(|u| covers(&[*t], *u)))
}

fn show_types(node: &Node<'_>) -> String {
    match node.get("type") {
        None => "any type".to_owned(),
        Some(Value::String(name)) => format!("[{name}]"),
        Some(Value::Array(names)) => format!(
            "[{}]",
            names
                .iter()
                .map(|n| n.as_str().map_or_else(|| n.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(other) => show(other),
    }
}

/// A JSON value for a message, cut to 60 characters.
fn show(value: &Value) -> String {
    truncate(value.to_string(), 60)
}

/// Values for a message: at most five, then how many more.
fn show_list<'v>(values: impl IntoIterator<Item = &'v Value>) -> String {
    let values: Vec<&Value> = values.into_iter().collect();
    let mut shown: Vec<String> = values.iter().take(5).map(|v| show(v)).collect();
    if values.len() > 5 {
        shown.push(format!("… ({} more)", values.len() - 5));
    }
    format!("[{}]", shown.join(", "))
}

/// "`keyword` 5 added", "… removed", "… changed from 5 to 3".
fn describe_change(keyword: &str, old: Option<&Value>, new: Option<&Value>) -> String {
    match (old, new) {
        (None, Some(new)) => format!("{keyword} {} added", show(new)),
        (Some(old), None) => format!("{keyword} {} removed", show(old)),
        (old, new) => format!(
            "{keyword} changed from {} to {}",
            show_opt(old),
            show_opt(new)
        ),
    }
}

fn show_opt(value: Option<&Value>) -> String {
    value.map_or_else(|| "none".to_owned(), show)
}

/// A numeric bound of a schema.
#[derive(Debug, Clone, Copy)]
struct Bound {
    value: f64,
    exclusive: bool,
    keyword: &'static str,
}

impl Bound {
    fn describe(bound: Option<Bound>) -> String {
        match bound {
            None => "none".to_owned(),
            Some(b) if b.keyword.starts_with("exclusive") || !b.exclusive => {
                format!("{} {}", b.keyword, b.value)
            }
            Some(b) => format!("{} {} (exclusive)", b.keyword, b.value),
        }
    }
}

/// The tightest lower (or upper) bound of a node, from `minimum`/`exclusiveMinimum` (or the
/// maximum keywords), with draft 4's boolean `exclusiveMinimum`.
fn bound(node: &Node<'_>, lower: bool) -> Option<Bound> {
    let (inclusive_kw, exclusive_kw) = if lower {
        ("minimum", "exclusiveMinimum")
    } else {
        ("maximum", "exclusiveMaximum")
    };
    let mut best = node
        .get(inclusive_kw)
        .and_then(Value::as_f64)
        .map(|value| Bound {
            value,
            exclusive: false,
            keyword: inclusive_kw,
        });
    match node.get(exclusive_kw) {
        Some(Value::Number(n)) => {
            if let Some(value) = n.as_f64() {
                let candidate = Bound {
                    value,
                    exclusive: true,
                    keyword: exclusive_kw,
                };
                best = match best {
                    Some(current) if !tighter(candidate, current, lower) => Some(current),
                    _ => Some(candidate),
                };
            }
        }
        Some(Value::Bool(true)) => {
            if let Some(current) = best.as_mut() {
                current.exclusive = true;
            }
        }
        _ => {}
    }
    best
}

/// Whether bound `x` refuses more than bound `y`.
fn tighter(x: Bound, y: Bound, lower: bool) -> bool {
    let stricter_value = if lower {
        x.value > y.value
    } else {
        x.value < y.value
    };
    stricter_value || (x.value == y.value && x.exclusive && !y.exclusive)
}

fn count_of(node: &Node<'_>, keyword: &str) -> Option<f64> {
    node.get(keyword).and_then(Value::as_f64)
}

fn strings_of(value: Option<&Value>) -> Vec<&str> {
    value
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Keywords that change the meaning of others in the same schema object: conjuncts holding
/// them are not merged into one object.
const NO_MERGE: [&str; 11] = [
    "if",
    "then",
    "else",
    "contains",
    "minContains",
    "maxContains",
    "additionalItems",
    "unevaluatedProperties",
    "unevaluatedItems",
    "$dynamicRef",
    "$recursiveRef",
];

enum Merged<'a> {
    /// One object with the keywords of every part, which accepts at least what the
    /// conjunction of the parts accepts.
    Node(Node<'a>),
    /// A part is `false`: the conjunction accepts nothing.
    Empty,
    /// The parts share a keyword or hold one that depends on others.
    No,
}

fn merge_parts<'a>(parts: &[Node<'a>], ptr: &str) -> Merged<'a> {
    let mut merged = Map::new();
    for part in parts {
        match &*part.v {
            Value::Bool(true) => continue,
            Value::Bool(false) => return Merged::Empty,
            Value::Object(map) => {
                for key in part.keys() {
                    if !is_constraint_keyword(key) {
                        continue;
                    }
                    let draft4_flag = matches!(key, "exclusiveMinimum" | "exclusiveMaximum")
                        && map.get(key).is_some_and(Value::is_boolean);
                    if NO_MERGE.contains(&key) || draft4_flag || merged.contains_key(key) {
                        return Merged::No;
                    }
                    if let Some(value) = map.get(key) {
                        merged.insert(key.to_owned(), value.clone());
                    }
                }
            }
            _ => return Merged::No,
        }
    }
    Merged::Node(Node {
        v: Cow::Owned(Value::Object(merged)),
        ptr: ptr.to_owned(),
        skip: 0,
    })
}

/// Where the keywords of a property's value come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Declared,
    Pattern,
    Additional,
}

/// Checker-only keywords that are compared structurally; every other constraint keyword is
/// compared for equality.
const COMPARED: [&str; 28] = [
    "type",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minItems",
    "maxItems",
    "uniqueItems",
    "items",
    "prefixItems",
    "additionalItems",
    "minProperties",
    "maxProperties",
    "required",
    "properties",
    "patternProperties",
    "additionalProperties",
    "$ref",
    "allOf",
    "anyOf",
    "oneOf",
];

/// The instance type a keyword applies to (`None`: every type).
fn keyword_applies_to(keyword: &str) -> Option<JType> {
    match keyword {
        "contains" | "minContains" | "maxContains" | "unevaluatedItems" => Some(JType::Array),
        "propertyNames"
        | "dependentRequired"
        | "dependentSchemas"
        | "dependencies"
        | "unevaluatedProperties" => Some(JType::Object),
        "contentMediaType" | "contentEncoding" | "contentSchema" => Some(JType::String),
        _ => None,
    }
}

/// Keywords that are only compared together.
fn keyword_group(keyword: &str) -> &'static [&'static str] {
    match keyword {
        "if" | "then" | "else" => &["if", "then", "else"],
        "contains" | "minContains" | "maxContains" => &["contains", "minContains", "maxContains"],
        _ => &[],
    }
}

struct Checker<'a> {
    a_doc: &'a Value,
    b_doc: &'a Value,
    a_legacy: bool,
    b_legacy: bool,
    dir: Dir,
    version: u32,
    /// Comparisons in progress (pointer and skipped keywords of A and B), assumed to hold when
    /// met again through a `$ref`.
    assumed: Vec<(String, u8, String, u8)>,
    steps: usize,
    exhausted: bool,
    /// Validators of every subschema of A's and B's documents, built when first needed.
    maps: [Option<Option<jsonschema::ValidatorMap>>; 2],
    /// Compiled `pattern`s for matching property names against `patternProperties`.
    patterns: HashMap<String, Option<jsonschema::Validator>>,
}

impl<'a> Checker<'a> {
    fn doc(&self, side: Side) -> &'a Value {
        match side {
            Side::A => self.a_doc,
            Side::B => self.b_doc,
        }
    }

    fn legacy(&self, side: Side) -> bool {
        match side {
            Side::A => self.a_legacy,
            Side::B => self.b_legacy,
        }
    }

    /// The name of schema A in messages.
    fn a_name(&self) -> String {
        match self.dir {
            Dir::Backward => format!("version {}", self.version),
            Dir::Forward => "the new schema".to_owned(),
        }
    }

    /// The name of schema B in messages.
    fn b_name(&self) -> String {
        match self.dir {
            Dir::Backward => "the new schema".to_owned(),
            Dir::Forward => format!("version {}", self.version),
        }
    }

    fn consequence(&self) -> String {
        format!(
            "data written with {} may not validate against {}",
            self.a_name(),
            self.b_name()
        )
    }

    /// `(old, new)` out of `(a, b)`.
    fn old_new<T>(&self, a: T, b: T) -> (T, T) {
        match self.dir {
            Dir::Backward => (a, b),
            Dir::Forward => (b, a),
        }
    }

    /// The pointer of the node that belongs to the new schema.
    fn cand(&self, a: &Node<'_>, b: &Node<'_>) -> String {
        match self.dir {
            Dir::Backward => b.ptr.clone(),
            Dir::Forward => a.ptr.clone(),
        }
    }

    fn cand_at(&self, a: &Node<'_>, b: &Node<'_>, suffix: &str) -> String {
        format!("{}{suffix}", self.cand(a, b))
    }

    fn find(out: &mut Vec<Finding>, path: String, what: String) {
        push_finding(out, Finding { path, what });
    }

    /// Follows `$ref`s that make up the whole node (no other constraint beside them, or a
    /// draft that ignores what is beside `$ref`).
    fn follow_refs(&self, mut node: Node<'a>, side: Side) -> Result<Node<'a>, String> {
        let mut seen: Vec<String> = Vec::new();
        loop {
            let Some(reference) = node.get("$ref") else {
                return Ok(node);
            };
            let Some(reference) = reference.as_str() else {
                return Err(format!(
                    "cannot prove compatibility: $ref at {} is not a string",
                    display_pointer(&node.ptr)
                ));
            };
            let alone = node
                .keys()
                .iter()
                .all(|k| *k == "$ref" || !is_constraint_keyword(k));
            if !alone && !self.legacy(side) {
                return Ok(node);
            }
            if seen.contains(&node.ptr) || seen.len() > MAX_REF_CHAIN {
                return Err(format!(
                    "cannot prove compatibility: $ref cycle through {}",
                    display_pointer(&node.ptr)
                ));
            }
            seen.push(node.ptr.clone());
            let Some((target, ptr)) = resolve_ref(self.doc(side), reference) else {
                return Err(format!(
                    "cannot prove compatibility: cannot resolve $ref {} (only references \
                     inside the schema, such as \"#/$defs/Name\", are followed)",
                    short(reference)
                ));
            };
            node = Node {
                v: Cow::Borrowed(target),
                ptr,
                skip: 0,
            };
        }
    }

    fn sub(&mut self, a: Node<'a>, b: Node<'a>, depth: usize, out: &mut Vec<Finding>) {
        self.steps += 1;
        if self.steps > MAX_CHECK_STEPS {
            // Reported in every comparison from now on, so that no trial passes for want of
            // being checked.
            self.exhausted = true;
            return Self::find(out, String::new(), exhausted_finding());
        }
        if depth > 2 * MAX_SCHEMA_DEPTH {
            Self::find(
                out,
                self.cand(&a, &b),
                "cannot prove compatibility: the comparison nests too deep (through $ref)"
                    .to_owned(),
            );
            return;
        }
        if a.skip == 0 && b.skip == 0 && self.a_legacy == self.b_legacy && self.equiv(&a.v, &b.v) {
            return;
        }
        let path = self.cand(&a, &b);
        let a = match self.follow_refs(a, Side::A) {
            Ok(node) => node,
            Err(what) => return Self::find(out, path, what),
        };
        let b = match self.follow_refs(b, Side::B) {
            Ok(node) => node,
            Err(what) => return Self::find(out, path, what),
        };
        let key =
            (a.borrowed() && b.borrowed()).then(|| (a.ptr.clone(), a.skip, b.ptr.clone(), b.skip));
        if let Some(key) = &key {
            if self.assumed.contains(key) {
                return;
            }
            self.assumed.push(key.clone());
        }
        self.sub_resolved(a, b, depth, out);
        if key.is_some() {
            self.assumed.pop();
        }
    }

    fn sub_resolved(&mut self, a: Node<'a>, b: Node<'a>, depth: usize, out: &mut Vec<Finding>) {
        if a.is_false() || !b.has_constraints() {
            return;
        }
        if !matches!(*a.v, Value::Object(_) | Value::Bool(_))
            || !matches!(*b.v, Value::Object(_) | Value::Bool(_))
        {
            return Self::find(
                out,
                self.cand(&a, &b),
                "cannot prove compatibility: a subschema is not an object or a boolean".to_owned(),
            );
        }
        if b.is_false() {
            let what = match self.dir {
                Dir::Backward => "the schema became false, which accepts no value".to_owned(),
                Dir::Forward => format!(
                    "{} had false here (no value allowed), the new schema accepts values",
                    self.b_name()
                ),
            };
            return Self::find(out, self.cand(&a, &b), what);
        }
        if let Some((values, origin)) = enumerable(&a) {
            // For `null`/`boolean` alone, a type B does not allow is clearer as a type change.
            if origin != "type" || types_cover(type_set(&b).as_deref(), type_set(&a).as_deref()) {
                return self.check_values(&a, &b, values, origin, out);
            }
        }
        // B is a conjunction: A must be within each part.
        if let Some(reference) = b.get("$ref") {
            let target = reference.as_str().and_then(|r| resolve_ref(self.b_doc, r));
            let Some((target, ptr)) = target else {
                return Self::find(
                    out,
                    self.cand(&a, &b),
                    format!(
                        "cannot prove compatibility: cannot resolve $ref {}",
                        show(reference)
                    ),
                );
            };
            self.sub(a.clone(), b.with_skip(SKIP_REF), depth + 1, out);
            let target = Node {
                v: Cow::Borrowed(target),
                ptr,
                skip: 0,
            };
            return self.sub(a, target, depth + 1, out);
        }
        if let Some(Value::Array(items)) = b.get("allOf") {
            let count = items.len();
            self.sub(a.clone(), b.with_skip(SKIP_ALLOF), depth + 1, out);
            for i in 0..count {
                if let Some(part) = b.child(&[Seg::Key("allOf"), Seg::Idx(i)]) {
                    self.sub(a.clone(), part, depth + 1, out);
                }
            }
            return;
        }
        // A is a conjunction: enough that its merged parts, or one part, are within B.
        if a.has("$ref") || a.has("allOf") {
            return self.sub_conjunction_a(a, b, depth, out);
        }
        // A is a disjunction: every branch must be within B.
        for keyword in ["anyOf", "oneOf"] {
            if matches!(a.get(keyword), Some(Value::Array(_))) {
                return self.sub_disjunction_a(a, b, keyword, depth, out);
            }
        }
        // B is a disjunction: A must be within one branch.
        for keyword in ["anyOf", "oneOf"] {
            if matches!(b.get(keyword), Some(Value::Array(_))) {
                return self.sub_disjunction_b(a, b, keyword, depth, out);
            }
        }
        self.compare_plain(&a, &b, depth, out);
    }

    /// Runs `sub` on each candidate in turn, stopping at the first that passes; when none
    /// does, reports the findings of the one with the fewest.
    fn first_passing(
        &mut self,
        candidates: Vec<Node<'a>>,
        b: &Node<'a>,
        depth: usize,
        out: &mut Vec<Finding>,
    ) {
        let mut best: Option<Vec<Finding>> = None;
        for candidate in candidates {
            let mut trial = Vec::new();
            self.sub(candidate, b.clone(), depth + 1, &mut trial);
            if trial.is_empty() {
                return;
            }
            if best.as_ref().is_none_or(|best| trial.len() < best.len()) {
                best = Some(trial);
            }
        }
        for finding in best.unwrap_or_default() {
            push_finding(out, finding);
        }
    }

    fn sub_conjunction_a(
        &mut self,
        a: Node<'a>,
        b: Node<'a>,
        depth: usize,
        out: &mut Vec<Finding>,
    ) {
        let mut parts = vec![a.with_skip(SKIP_REF | SKIP_ALLOF)];
        if let Some(reference) = a.get("$ref") {
            match reference.as_str().and_then(|r| resolve_ref(self.a_doc, r)) {
                Some((target, ptr)) => parts.push(Node {
                    v: Cow::Borrowed(target),
                    ptr,
                    skip: 0,
                }),
                None => {
                    return Self::find(
                        out,
                        self.cand(&a, &b),
                        format!(
                            "cannot prove compatibility: cannot resolve $ref {}",
                            show(reference)
                        ),
                    );
                }
            }
        }
        if let Some(Value::Array(items)) = a.get("allOf") {
            for i in 0..items.len() {
                if let Some(part) = a.child(&[Seg::Key("allOf"), Seg::Idx(i)]) {
                    parts.push(part);
                }
            }
        }
        if parts.iter().any(Node::is_false) {
            return;
        }
        parts.retain(Node::has_constraints);
        match parts.len() {
            0 => return self.sub(Node::truth(a.ptr.clone()), b, depth + 1, out),
            1 => {
                if let Some(part) = parts.pop() {
                    self.sub(part, b, depth + 1, out);
                }
                return;
            }
            _ => {}
        }
        match merge_parts(&parts, &a.ptr) {
            Merged::Node(merged) => self.sub(merged, b, depth + 1, out),
            Merged::Empty => {}
            Merged::No => self.first_passing(parts, &b, depth, out),
        }
    }

    fn sub_disjunction_a(
        &mut self,
        a: Node<'a>,
        b: Node<'a>,
        keyword: &str,
        depth: usize,
        out: &mut Vec<Finding>,
    ) {
        let count = a.get(keyword).and_then(Value::as_array).map_or(0, Vec::len);
        let rest = a.with_skip(skip_flag(keyword));
        let rest_constrains = rest.has_constraints();
        for i in 0..count {
            let Some(branch) = a.child(&[Seg::Key(keyword), Seg::Idx(i)]) else {
                continue;
            };
            if !rest_constrains {
                self.sub(branch, b.clone(), depth + 1, out);
                continue;
            }
            let branch_ptr = branch.ptr.clone();
            match merge_parts(&[rest.clone(), branch.clone()], &branch_ptr) {
                Merged::Node(merged) => self.sub(merged, b.clone(), depth + 1, out),
                Merged::Empty => {}
                Merged::No => self.first_passing(vec![branch, rest.clone()], &b, depth, out),
            }
        }
    }

    fn sub_disjunction_b(
        &mut self,
        a: Node<'a>,
        b: Node<'a>,
        keyword: &str,
        depth: usize,
        out: &mut Vec<Finding>,
    ) {
        self.sub(a.clone(), b.with_skip(skip_flag(keyword)), depth + 1, out);
        let count = b.get(keyword).and_then(Value::as_array).map_or(0, Vec::len);
        let mut best: Option<(usize, Vec<Finding>)> = None;
        for i in 0..count {
            let Some(branch) = b.child(&[Seg::Key(keyword), Seg::Idx(i)]) else {
                continue;
            };
            let mut trial = Vec::new();
            self.sub(a.clone(), branch.clone(), depth + 1, &mut trial);
            if trial.is_empty() {
                if keyword == "oneOf" {
                    for j in (0..count).filter(|j| *j != i) {
                        let Some(other) = b.child(&[Seg::Key(keyword), Seg::Idx(j)]) else {
                            continue;
                        };
                        if !self.disjoint((Side::A, &a), (Side::B, &other), 0)
                            && !self.disjoint((Side::B, &branch), (Side::B, &other), 0)
                        {
                            let what = format!(
                                "cannot prove compatibility: the values {} allows here match \
                                 branch {i} of oneOf in {} but may also match branch {j}, and \
                                 oneOf refuses values matching two branches",
                                self.a_name(),
                                self.b_name()
                            );
                            Self::find(out, self.cand_at(&a, &b, "/oneOf"), what);
                        }
                    }
                }
                return;
            }
            if best
                .as_ref()
                .is_none_or(|(_, best)| trial.len() < best.len())
            {
                best = Some((i, trial));
            }
        }
        let closest = match &best {
            Some((i, trial)) => match trial.first() {
                Some(first) => format!(
                    "; the closest is branch {i}, where {}: {}",
                    display_pointer(&first.path),
                    first.what
                ),
                None => String::new(),
            },
            None => String::new(),
        };
        let suffix = match self.dir {
            Dir::Backward => format!("/{keyword}"),
            Dir::Forward => String::new(),
        };
        let what = format!(
            "no branch of {keyword} in {} accepts every value {} allows here{closest}",
            self.b_name(),
            self.a_name()
        );
        Self::find(out, self.cand_at(&a, &b, &suffix), what);
    }

    /// Whether no value is valid under both `x` and `y` (false when it cannot tell).
    fn disjoint(&mut self, x: (Side, &Node<'a>), y: (Side, &Node<'a>), depth: usize) -> bool {
        if depth > 8 {
            return false;
        }
        let (Ok(xn), Ok(yn)) = (
            self.follow_refs(x.1.clone(), x.0),
            self.follow_refs(y.1.clone(), y.0),
        ) else {
            return false;
        };
        if xn.is_false() || yn.is_false() {
            return true;
        }
        for ((side_e, e), (side_o, o)) in [((x.0, &xn), (y.0, &yn)), ((y.0, &yn), (x.0, &xn))] {
            if let Some((values, _)) = enumerable(e) {
                let values = self.filter_valid(side_e, e, values);
                let Some(validator) = self.validator(side_o, o) else {
                    return false;
                };
                return values.iter().all(|v| !validator.is_valid(v));
            }
        }
        let (tx, ty) = (type_set(&xn), type_set(&yn));
        if let (Some(tx), Some(ty)) = (&tx, &ty)
            && !types_overlap(tx, ty)
        {
            return true;
        }
        let objects_only = |t: &Option<Vec<JType>>| t.as_deref() == Some(&[JType::Object]);
        if objects_only(&tx) || objects_only(&ty) {
            let y_required = strings_of(yn.get("required"));
            for name in strings_of(xn.get("required")) {
                if !y_required.contains(&name) {
                    continue;
                }
                if let (Some(px), Some(py)) = (
                    xn.child(&[Seg::Key("properties"), Seg::Key(name)]),
                    yn.child(&[Seg::Key("properties"), Seg::Key(name)]),
                ) && self.disjoint((x.0, &px), (y.0, &py), depth + 1)
                {
                    return true;
                }
            }
        }
        false
    }

    /// The validator of a node: from the document's validator map for a subschema as it
    /// stands, else compiled from a copy of the document holding the node under `$defs`
    /// (so that its `$ref`s still resolve).
    fn validator(&mut self, side: Side, node: &Node<'a>) -> Option<jsonschema::Validator> {
        let doc = self.doc(side);
        if node.real() {
            let index = usize::from(side == Side::B);
            if self.maps[index].is_none() {
                self.maps[index] = Some(validation_options().build_map(doc).ok());
            }
            let map = self.maps[index].as_ref()?.as_ref()?;
            return map.get(&format!("#{}", node.ptr)).cloned();
        }
        const PROBE: &str = "civiclake-probe";
        let Value::Object(root) = doc else {
            return None;
        };
        let container = if self.legacy(side) {
            "definitions"
        } else {
            "$defs"
        };
        let mut copy = root.clone();
        let defs = copy
            .entry(container)
            .or_insert_with(|| Value::Object(Map::new()));
        defs.as_object_mut()?
            .insert(PROBE.to_owned(), node.standalone());
        let copy = Value::Object(copy);
        let map = validation_options().build_map(&copy).ok()?;
        map.get(&format!("#/{container}/{PROBE}")).cloned()
    }

    /// `values` without those `node` refuses (all of them when that cannot be evaluated).
    fn filter_valid(&mut self, side: Side, node: &Node<'a>, values: Vec<Value>) -> Vec<Value> {
        if !node.real() {
            return values;
        }
        match self.validator(side, node) {
            Some(validator) => values
                .into_iter()
                .filter(|v| validator.is_valid(v))
                .collect(),
            None => values,
        }
    }

    /// A enumerates its values: each must be valid under B.
    fn check_values(
        &mut self,
        a: &Node<'a>,
        b: &Node<'a>,
        values: Vec<Value>,
        origin: &'static str,
        out: &mut Vec<Finding>,
    ) {
        let values = self.filter_valid(Side::A, a, values);
        let Some(validator) = self.validator(Side::B, b) else {
            return Self::find(
                out,
                self.cand(a, b),
                format!(
                    "cannot prove compatibility: {} cannot be evaluated at {}",
                    self.b_name(),
                    display_pointer(&b.ptr)
                ),
            );
        };
        let refused: Vec<&Value> = values.iter().filter(|v| !validator.is_valid(v)).collect();
        let Some(first) = refused.first() else {
            return;
        };
        let b_keyword = if b.has("const") {
            Some("const")
        } else if b.has("enum") {
            Some("enum")
        } else {
            None
        };
        let first_error = validator.iter_errors(first).next();
        let path = match self.dir {
            Dir::Backward => match (b_keyword, &first_error) {
                (Some(keyword), _) => format!("{}/{keyword}", b.ptr),
                // The keyword of B that refused the value, unless it lies behind a $ref.
                (None, Some(error)) => {
                    let at = error.schema_path().to_string();
                    if at.contains("$ref") {
                        b.ptr.clone()
                    } else {
                        format!("{}{at}", b.ptr)
                    }
                }
                (None, None) => b.ptr.clone(),
            },
            Dir::Forward => format!("{}/{origin}", a.ptr),
        };
        let what = match (origin, b_keyword) {
            ("const", Some("const")) => {
                let (old, new) = self.old_new(a.get("const"), b.get("const"));
                format!("const changed from {} to {}", show_opt(old), show_opt(new))
            }
            ("enum" | "const", Some(_)) => match self.dir {
                Dir::Backward => format!("enum value(s) {} removed", show_list(refused)),
                Dir::Forward => format!("enum value(s) {} added", show_list(refused)),
            },
            _ => {
                let reason = first_error
                    .map(|e| truncate(e.to_string(), 120))
                    .unwrap_or_default();
                format!(
                    "value(s) {} allowed by the {origin} of {} are refused by {} ({reason})",
                    show_list(refused),
                    self.a_name(),
                    self.b_name()
                )
            }
        };
        Self::find(out, path, what);
    }

    fn compare_plain(&mut self, a: &Node<'a>, b: &Node<'a>, depth: usize, out: &mut Vec<Finding>) {
        // An enumeration only in B narrows A's values to a list.
        for keyword in ["const", "enum"] {
            if let Some(values) = b.get(keyword) {
                let what = match self.dir {
                    Dir::Backward => format!(
                        "{keyword} {} added ({} did not restrict the values to a list)",
                        show(values),
                        self.a_name()
                    ),
                    Dir::Forward => format!(
                        "{keyword} {} removed (the new schema allows other values)",
                        show(values)
                    ),
                };
                return Self::find(out, self.cand_at(a, b, &format!("/{keyword}")), what);
            }
        }
        // Types.
        let a_types = type_set(a);
        let b_types = type_set(b);
        if !types_cover(b_types.as_deref(), a_types.as_deref()) {
            let (old, new) = self.old_new(show_types(a), show_types(b));
            let verb = match self.dir {
                Dir::Backward if types_cover(a_types.as_deref(), b_types.as_deref()) => "narrowed",
                Dir::Forward if types_cover(a_types.as_deref(), b_types.as_deref()) => "widened",
                _ => "changed",
            };
            Self::find(
                out,
                self.cand_at(a, b, "/type"),
                format!("type {verb} from {old} to {new}"),
            );
        }
        // The types of A's values that B may accept: their other keywords still matter (the
        // integers among A's numbers when B only takes integers).
        let live: Vec<JType> = a_types
            .as_deref()
            .unwrap_or(&ANY_TYPE)
            .iter()
            .filter_map(|t| match b_types.as_deref() {
                None => Some(*t),
                Some(bt) if covers(bt, *t) => Some(*t),
                Some(bt) if *t == JType::Number && bt.contains(&JType::Integer) => {
                    Some(JType::Integer)
                }
                Some(_) => None,
            })
            .collect();
        let can_be = |t: JType| match t {
            JType::Number => live.contains(&JType::Number) || live.contains(&JType::Integer),
            other => live.contains(&other),
        };
        if live.is_empty() {
            return;
        }
        if can_be(JType::Number) {
            self.compare_bound(a, b, true, out);
            self.compare_bound(a, b, false, out);
            if let Some(b_multiple) = b.get("multipleOf").and_then(Value::as_f64) {
                let ok = a
                    .get("multipleOf")
                    .and_then(Value::as_f64)
                    .is_some_and(|a_multiple| is_multiple(a_multiple, b_multiple));
                if !ok {
                    self.keyword_changed(a, b, "multipleOf", out);
                }
            }
        }
        if can_be(JType::String) {
            self.compare_count(a, b, "minLength", true, out);
            self.compare_count(a, b, "maxLength", false, out);
            for keyword in ["pattern", "format"] {
                if let Some(b_value) = b.get(keyword)
                    && a.get(keyword) != Some(b_value)
                {
                    let (old, new) = self.old_new(a.get(keyword), b.get(keyword));
                    Self::find(
                        out,
                        self.cand_at(a, b, &format!("/{keyword}")),
                        describe_change(keyword, old, new),
                    );
                }
            }
        }
        if can_be(JType::Array) {
            self.compare_count(a, b, "minItems", true, out);
            self.compare_count(a, b, "maxItems", false, out);
            if b.get("uniqueItems") == Some(&Value::Bool(true))
                && a.get("uniqueItems") != Some(&Value::Bool(true))
            {
                self.keyword_changed(a, b, "uniqueItems", out);
            }
            self.compare_items(a, b, depth, out);
        }
        if can_be(JType::Object) {
            self.compare_count(a, b, "minProperties", true, out);
            self.compare_count(a, b, "maxProperties", false, out);
            self.compare_object(a, b, depth, out);
        }
        // Keywords only compared for equality.
        for keyword in b.keys() {
            if !is_constraint_keyword(keyword) || COMPARED.contains(&keyword) {
                continue;
            }
            if let Some(t) = keyword_applies_to(keyword)
                && !can_be(t)
            {
                continue;
            }
            if matches!(
                keyword,
                "unevaluatedProperties" | "unevaluatedItems" | "$dynamicRef" | "$recursiveRef"
            ) {
                Self::find(
                    out,
                    self.cand_at(a, b, &format!("/{}", escape(keyword))),
                    format!(
                        "cannot prove compatibility: keyword {keyword} depends on the rest of \
                         the schema, which changed"
                    ),
                );
                continue;
            }
            let group = keyword_group(keyword);
            let together: Vec<&str> = if group.is_empty() {
                vec![keyword]
            } else {
                group.to_vec()
            };
            for k in together {
                let same = match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => self.equiv(x, y),
                    (None, None) => true,
                    _ => false,
                };
                if !same {
                    self.keyword_changed(a, b, k, out);
                }
            }
        }
    }

    fn keyword_changed(&self, a: &Node<'_>, b: &Node<'_>, keyword: &str, out: &mut Vec<Finding>) {
        let (old, new) = self.old_new(a.get(keyword), b.get(keyword));
        let change = match (old, new) {
            (None, Some(new)) => format!("added ({})", show(new)),
            (Some(old), None) => format!("removed (it was {})", show(old)),
            (old, new) => format!("changed from {} to {}", show_opt(old), show_opt(new)),
        };
        Self::find(
            out,
            self.cand_at(a, b, &format!("/{}", escape(keyword))),
            format!("cannot prove compatibility: keyword {keyword:?} {change}"),
        );
    }

    fn compare_bound(&self, a: &Node<'_>, b: &Node<'_>, lower: bool, out: &mut Vec<Finding>) {
        let Some(b_bound) = bound(b, lower) else {
            return;
        };
        let a_bound = bound(a, lower);
        if a_bound.is_some_and(|a_bound| !tighter(b_bound, a_bound, lower)) {
            return;
        }
        let keyword = match self.dir {
            Dir::Backward => b_bound.keyword,
            Dir::Forward => a_bound.map_or(b_bound.keyword, |a| a.keyword),
        };
        let (old, new) = self.old_new(a_bound, Some(b_bound));
        let verb = match self.dir {
            Dir::Backward => "tightened",
            Dir::Forward => "relaxed",
        };
        let which = if lower { "lower" } else { "upper" };
        Self::find(
            out,
            self.cand_at(a, b, &format!("/{keyword}")),
            format!(
                "{which} bound {verb} from {} to {}",
                Bound::describe(old),
                Bound::describe(new)
            ),
        );
    }

    /// `minLength`-like (`minimum` true) and `maxLength`-like counts.
    fn compare_count(
        &self,
        a: &Node<'_>,
        b: &Node<'_>,
        keyword: &str,
        minimum: bool,
        out: &mut Vec<Finding>,
    ) {
        let Some(b_count) = count_of(b, keyword) else {
            return;
        };
        let a_count = count_of(a, keyword);
        let ok = if minimum {
            b_count <= a_count.unwrap_or(0.0)
        } else {
            a_count.is_some_and(|a_count| a_count <= b_count)
        };
        if ok {
            return;
        }
        let (old, new) = self.old_new(a.get(keyword), b.get(keyword));
        let verb = match self.dir {
            Dir::Backward => "tightened",
            Dir::Forward => "relaxed",
        };
        Self::find(
            out,
            self.cand_at(a, b, &format!("/{keyword}")),
            format!(
                "{keyword} {verb} from {} to {}",
                show_opt(old),
                show_opt(new)
            ),
        );
    }

    fn compare_items(&mut self, a: &Node<'a>, b: &Node<'a>, depth: usize, out: &mut Vec<Finding>) {
        let tuple =
            |n: &Node<'_>| n.has("prefixItems") || n.get("items").is_some_and(Value::is_array);
        if tuple(a) || tuple(b) {
            const GROUP: [&str; 3] = ["prefixItems", "items", "additionalItems"];
            if !GROUP.iter().any(|k| b.has(k)) {
                return;
            }
            for keyword in GROUP {
                let same = match (a.get(keyword), b.get(keyword)) {
                    (Some(x), Some(y)) => self.equiv(x, y),
                    (None, None) => true,
                    _ => false,
                };
                if !same {
                    self.keyword_changed(a, b, keyword, out);
                }
            }
            return;
        }
        if let Some(b_items) = b.field("items") {
            self.sub(a.field_or_true("items"), b_items, depth + 1, out);
        }
    }

    fn patterns_of(&self, node: &Node<'a>) -> Vec<(String, Node<'a>)> {
        let Some(Value::Object(entries)) = node.get("patternProperties") else {
            return Vec::new();
        };
        entries
            .keys()
            .filter_map(|pattern| {
                node.child(&[Seg::Key("patternProperties"), Seg::Key(pattern)])
                    .map(|child| (pattern.clone(), child))
            })
            .collect()
    }

    /// Whether property name `name` matches `pattern` (`None` when the pattern does not
    /// compile).
    fn matches(&mut self, pattern: &str, name: &str) -> Option<bool> {
        let validator = self
            .patterns
            .entry(pattern.to_owned())
            .or_insert_with(|| {
                validation_options()
                    .build(&serde_json::json!({ "pattern": pattern }))
                    .ok()
            })
            .as_ref()?;
        Some(validator.is_valid(&Value::String(name.to_owned())))
    }

    /// The subschemas that apply to the value of property `name` in an object valid under
    /// `node`, and where they come from.
    fn property_constraints(
        &mut self,
        node: &Node<'a>,
        patterns: &[(String, Node<'a>)],
        name: &str,
    ) -> Result<(Vec<Node<'a>>, Source), String> {
        let mut found = Vec::new();
        let mut source = Source::Additional;
        if let Some(declared) = node.child(&[Seg::Key("properties"), Seg::Key(name)]) {
            found.push(declared);
            source = Source::Declared;
        }
        for (pattern, schema) in patterns {
            match self.matches(pattern, name) {
                Some(true) => {
                    found.push(schema.clone());
                    if source == Source::Additional {
                        source = Source::Pattern;
                    }
                }
                Some(false) => {}
                None => {
                    return Err(format!(
                        "cannot prove compatibility: patternProperties pattern {} does not \
                         compile",
                        short(pattern)
                    ));
                }
            }
        }
        if found.is_empty() {
            found.push(node.field_or_true("additionalProperties"));
        }
        Ok((found, source))
    }

    fn compare_object(&mut self, a: &Node<'a>, b: &Node<'a>, depth: usize, out: &mut Vec<Finding>) {
        let a_required = strings_of(a.get("required"));
        for name in strings_of(b.get("required")) {
            if a_required.contains(&name) {
                continue;
            }
            let what = match self.dir {
                Dir::Backward => format!("property {} became required", short(name)),
                Dir::Forward => format!("property {} is no longer required", short(name)),
            };
            Self::find(out, self.cand_at(a, b, "/required"), what);
        }
        let a_patterns = self.patterns_of(a);
        let b_patterns = self.patterns_of(b);
        let a_open = !a.field_or_true("additionalProperties").has_constraints();
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for node in [a, b] {
            if let Some(Value::Object(properties)) = node.get("properties") {
                names.extend(properties.keys().map(String::as_str));
            }
        }
        for name in names {
            let path = self.cand_at(a, b, &format!("/properties/{}", escape(name)));
            let (a_parts, a_source) = match self.property_constraints(a, &a_patterns, name) {
                Ok(found) => found,
                Err(what) => return Self::find(out, path, what),
            };
            let (b_parts, b_source) = match self.property_constraints(b, &b_patterns, name) {
                Ok(found) => found,
                Err(what) => return Self::find(out, path, what),
            };
            if a_parts.iter().any(Node::is_false) {
                continue;
            }
            for b_part in b_parts {
                if !b_part.has_constraints() {
                    continue;
                }
                let mut trial = Vec::new();
                if a_parts.len() == 1 {
                    for a_part in &a_parts {
                        self.sub(a_part.clone(), b_part.clone(), depth + 1, &mut trial);
                    }
                } else {
                    self.first_passing(a_parts.clone(), &b_part, depth, &mut trial);
                }
                let Some(first) = trial.first() else {
                    continue;
                };
                if a_source == Source::Additional && a_open && b_source == Source::Declared {
                    let what = match self.dir {
                        Dir::Backward => format!(
                            "property {} added to an open content model: {} has no \
                             \"additionalProperties\": false, so its data may already carry {} \
                             with values the new schema refuses ({}); declare \
                             \"additionalProperties\": false from the first version to add \
                             properties compatibly",
                            short(name),
                            self.a_name(),
                            short(name),
                            first.what
                        ),
                        Dir::Forward => format!(
                            "property {} removed from an open content model: the new schema \
                             accepts {} with any value, which {} refuses ({})",
                            short(name),
                            short(name),
                            self.b_name(),
                            first.what
                        ),
                    };
                    Self::find(out, path.clone(), what);
                } else if b_source == Source::Additional && b_part.is_false() {
                    let what = match self.dir {
                        Dir::Backward => format!(
                            "property {} removed while the new schema has \
                             \"additionalProperties\": false",
                            short(name)
                        ),
                        Dir::Forward => format!(
                            "property {} added but {} has \"additionalProperties\": false",
                            short(name),
                            self.b_name()
                        ),
                    };
                    Self::find(out, path.clone(), what);
                } else {
                    for finding in trial {
                        push_finding(out, finding);
                    }
                }
            }
        }
        // Names declared by neither: patternProperties, then additionalProperties.
        let a_additional = a.field_or_true("additionalProperties");
        for (pattern, b_schema) in &b_patterns {
            match a_patterns.iter().find(|(p, _)| p == pattern) {
                Some((_, a_schema)) => {
                    self.sub(a_schema.clone(), b_schema.clone(), depth + 1, out);
                }
                None => {
                    self.sub(a_additional.clone(), b_schema.clone(), depth + 1, out);
                    for (_, a_schema) in &a_patterns {
                        self.sub(a_schema.clone(), b_schema.clone(), depth + 1, out);
                    }
                }
            }
        }
        let b_additional = b.field_or_true("additionalProperties");
        if !b_additional.has_constraints() {
            return;
        }
        for (pattern, a_schema) in &a_patterns {
            if !b_patterns.iter().any(|(p, _)| p == pattern) {
                self.sub(a_schema.clone(), b_additional.clone(), depth + 1, out);
            }
        }
        let mut trial = Vec::new();
        self.sub(a_additional, b_additional.clone(), depth + 1, &mut trial);
        if trial.is_empty() {
            return;
        }
        if b_additional.is_false() {
            let what = match self.dir {
                Dir::Backward => format!(
                    "the content model was closed (\"additionalProperties\": false): {} \
                     accepts properties the new schema does not declare",
                    self.a_name()
                ),
                Dir::Forward => format!(
                    "the content model was opened (\"additionalProperties\": false removed): \
                     the new schema accepts properties {} does not declare",
                    self.b_name()
                ),
            };
            Self::find(out, self.cand_at(a, b, "/additionalProperties"), what);
        } else {
            for finding in trial {
                push_finding(out, finding);
            }
        }
    }

    /// Whether two values are the same, `$ref`s compared by what they point to (in A's and
    /// B's documents). Gives up (false) after [`MAX_EQUIV_STEPS`] comparisons.
    fn equiv(&self, x: &Value, y: &Value) -> bool {
        let mut work: Vec<(&Value, &Value)> = vec![(x, y)];
        let mut seen: HashSet<(String, String)> = HashSet::new();
        let mut steps = 0usize;
        while let Some((x, y)) = work.pop() {
            steps += 1;
            if steps > MAX_EQUIV_STEPS {
                return false;
            }
            match (x, y) {
                (Value::Object(mx), Value::Object(my)) => {
                    let rx = mx.get("$ref").and_then(Value::as_str);
                    let ry = my.get("$ref").and_then(Value::as_str);
                    match (rx, ry) {
                        (Some(rx), Some(ry)) => {
                            let targets =
                                resolve_ref(self.a_doc, rx).zip(resolve_ref(self.b_doc, ry));
                            match targets {
                                Some(((tx, px), (ty, py))) => {
                                    let fresh = seen.insert((px, py));
                                    if fresh {
                                        work.push((tx, ty));
                                    }
                                }
                                None if rx != ry => return false,
                                None => {}
                            }
                        }
                        (None, None) => {}
                        _ => return false,
                    }
                    if mx.len() != my.len() {
                        return false;
                    }
                    for (key, vx) in mx {
                        if key == "$ref" {
                            continue;
                        }
                        match my.get(key) {
                            Some(vy) => work.push((vx, vy)),
                            None => return false,
                        }
                    }
                }
                (Value::Array(ax), Value::Array(ay)) => {
                    if ax.len() != ay.len() {
                        return false;
                    }
                    work.extend(ax.iter().zip(ay));
                }
                (Value::Number(nx), Value::Number(ny)) => {
                    if nx != ny && (nx.as_f64().is_none() || nx.as_f64() != ny.as_f64()) {
                        return false;
                    }
                }
                _ => {
                    if x != y {
                        return false;
                    }
                }
            }
        }
        true
    }
}

/// The values a node allows when it lists them: `const`, `enum`, or `type` `null`/`boolean`
/// alone.
fn enumerable(node: &Node<'_>) -> Option<(Vec<Value>, &'static str)> {
    if let Some(value) = node.get("const") {
        return Some((vec![value.clone()], "const"));
    }
    if let Some(Value::Array(values)) = node.get("enum") {
        return Some((values.clone(), "enum"));
    }
    let types = type_set(node)?;
    if types.is_empty()
        || types
            .iter()
            .any(|t| !matches!(t, JType::Null | JType::Boolean))
    {
        return None;
    }
    let mut values = Vec::new();
    if types.contains(&JType::Null) {
        values.push(Value::Null);
    }
    if types.contains(&JType::Boolean) {
        values.extend([Value::Bool(false), Value::Bool(true)]);
    }
    Some((values, "type"))
}

/// Whether every multiple of `a` is a multiple of `b`.
fn is_multiple(a: f64, b: f64) -> bool {
    if a <= 0.0 || b <= 0.0 {
        return false;
    }
    let ratio = a / b;
    ratio >= 1.0 && (ratio - ratio.round()).abs() < 1e-9
}

#[cfg(test)]
// `&[v1.clone()]` reads better than `std::slice::from_ref(&v1)` in the many one-version checks.
#[allow(clippy::cloned_ref_to_slice_refs)]
mod tests {
    use super::*;
    use serde_json::json;

    const TYPE: &str = "it.prato.school.canteen.MealOrdered";

    fn closed(properties: Value, required: Value) -> Value {
        json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false
        })
    }

    fn open(properties: Value) -> Value {
        json!({"type": "object", "properties": properties})
    }

    /// `(against_version, path, message)` of each issue.
    fn issues(
        mode: Compatibility,
        previous: &[Value],
        candidate: &Value,
    ) -> Vec<(u32, String, String)> {
        check_compatibility(mode, previous, candidate)
            .into_iter()
            .map(|i| (i.against_version, i.path, i.message))
            .collect()
    }

    fn paths(mode: Compatibility, previous: &[Value], candidate: &Value) -> Vec<String> {
        check_compatibility(mode, previous, candidate)
            .into_iter()
            .map(|i| i.path)
            .collect()
    }

    const BACK1: &str = "data written with version 1 may not validate against the new schema";
    const FORW1: &str = "data written with the new schema may not validate against version 1";

    // ---- modes -------------------------------------------------------------------------------

    #[test]
    fn modes_parse_display_and_serialize() {
        for mode in Compatibility::ALL {
            assert_eq!(mode.as_str().parse::<Compatibility>(), Ok(mode));
            assert_eq!(mode.to_string(), mode.as_str());
            let json = serde_json::to_value(mode).unwrap();
            assert_eq!(json, json!(mode.as_str()));
            assert_eq!(serde_json::from_value::<Compatibility>(json).unwrap(), mode);
        }
        assert_eq!(
            "full_transitive".parse::<Compatibility>(),
            Ok(Compatibility::FullTransitive)
        );
        assert_eq!(
            " Backward ".parse::<Compatibility>(),
            Ok(Compatibility::Backward)
        );
        assert_eq!(
            serde_json::from_value::<Compatibility>(json!("forward")).unwrap(),
            Compatibility::Forward
        );
        let err = "SIDEWAYS".parse::<Compatibility>().unwrap_err();
        assert!(err.to_string().contains("\"SIDEWAYS\""), "{err}");
        assert!(err.to_string().contains("BACKWARD_TRANSITIVE"), "{err}");
        assert!(serde_json::from_value::<Compatibility>(json!("up")).is_err());
        assert_eq!(Compatibility::default(), Compatibility::Backward);
        assert!(Compatibility::Full.checks_backward() && Compatibility::Full.checks_forward());
        assert!(!Compatibility::Forward.checks_backward());
        assert!(!Compatibility::None.checks_backward() && !Compatibility::None.checks_forward());
        assert!(Compatibility::BackwardTransitive.is_transitive());
        assert!(!Compatibility::Backward.is_transitive());
    }

    // ---- subset rules ------------------------------------------------------------------------

    #[test]
    fn adding_a_required_property_breaks_backward_only() {
        let v1 = closed(json!({"a": {"type": "string"}}), json!(["a"]));
        let v2 = closed(
            json!({"a": {"type": "string"}, "b": {"type": "string"}}),
            json!(["a", "b"]),
        );
        assert_eq!(
            issues(Compatibility::Backward, &[v1.clone()], &v2),
            vec![(
                1,
                "/required".to_owned(),
                format!("property \"b\" became required: {BACK1}")
            )]
        );
        // Forward: v1 is closed, so the new data's "b" is refused by version 1.
        assert_eq!(
            issues(Compatibility::Forward, &[v1], &v2),
            vec![(
                1,
                "/properties/b".to_owned(),
                format!(
                    "property \"b\" added but version 1 has \"additionalProperties\": false: \
                     {FORW1}"
                )
            )]
        );
    }

    #[test]
    fn removing_a_required_property_breaks_forward_only() {
        let v1 = open(json!({"a": {"type": "string"}, "b": {"type": "string"}}));
        let v1 = {
            let mut v = v1;
            v["required"] = json!(["a", "b"]);
            v
        };
        let v2 = {
            let mut v = v1.clone();
            v["required"] = json!(["a"]);
            v
        };
        assert!(issues(Compatibility::Backward, &[v1.clone()], &v2).is_empty());
        assert_eq!(
            issues(Compatibility::Forward, &[v1], &v2),
            vec![(
                1,
                "/required".to_owned(),
                format!("property \"b\" is no longer required: {FORW1}")
            )]
        );
    }

    #[test]
    fn widening_integer_to_number_is_backward_not_forward() {
        let v1 = closed(json!({"amount": {"type": "integer"}}), json!(["amount"]));
        let v2 = closed(json!({"amount": {"type": "number"}}), json!(["amount"]));
        assert!(issues(Compatibility::Backward, &[v1.clone()], &v2).is_empty());
        assert_eq!(
            issues(Compatibility::Forward, &[v1.clone()], &v2),
            vec![(
                1,
                "/properties/amount/type".to_owned(),
                format!("type widened from [integer] to [number]: {FORW1}")
            )]
        );
        // And narrowing is the reverse.
        assert_eq!(
            issues(Compatibility::Backward, &[v2.clone()], &v1),
            vec![(
                1,
                "/properties/amount/type".to_owned(),
                format!("type narrowed from [number] to [integer]: {BACK1}")
            )]
        );
        assert!(issues(Compatibility::Forward, &[v2], &v1).is_empty());
    }

    #[test]
    fn adding_an_enum_value_is_backward_not_forward() {
        let v1 = closed(json!({"status": {"enum": ["open", "closed"]}}), json!([]));
        let v2 = closed(
            json!({"status": {"enum": ["open", "closed", "cancelled"]}}),
            json!([]),
        );
        assert!(issues(Compatibility::Backward, &[v1.clone()], &v2).is_empty());
        assert_eq!(
            issues(Compatibility::Forward, &[v1.clone()], &v2),
            vec![(
                1,
                "/properties/status/enum".to_owned(),
                format!("enum value(s) [\"cancelled\"] added: {FORW1}")
            )]
        );
        assert_eq!(
            issues(Compatibility::Backward, &[v2], &v1),
            vec![(
                1,
                "/properties/status/enum".to_owned(),
                format!("enum value(s) [\"cancelled\"] removed: {BACK1}")
            )]
        );
    }

    #[test]
    fn open_content_model_adding_a_constrained_property_breaks_backward() {
        let v1 = open(json!({"a": {"type": "string"}}));
        let v2 = open(json!({"a": {"type": "string"}, "note": {"type": "string"}}));
        let found = issues(Compatibility::Backward, &[v1.clone()], &v2);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].1, "/properties/note");
        assert!(
            found[0].2.starts_with(
                "property \"note\" added to an open content model: version 1 has no \
                 \"additionalProperties\": false, so its data may already carry \"note\" with \
                 values the new schema refuses (type narrowed from any type to [string])"
            ),
            "{}",
            found[0].2
        );
        assert!(found[0].2.ends_with(BACK1));
        // Old data such as {"note": 5} really is refused by the new schema.
        let new = CompiledSchema::compile(&v2).unwrap();
        let old = CompiledSchema::compile(&v1).unwrap();
        assert!(old.is_valid(&json!({"note": 5})) && !new.is_valid(&json!({"note": 5})));
        // New data is fine for the old open schema.
        assert!(issues(Compatibility::Forward, &[v1.clone()], &v2).is_empty());
        // A property without a constraint can be added to an open model in FULL mode.
        let v2_plain = open(json!({
            "a": {"type": "string"},
            "note": {"description": "free text", "title": "Note"}
        }));
        assert!(issues(Compatibility::Full, &[v1], &v2_plain).is_empty());
    }

    #[test]
    fn open_content_model_removing_a_property_breaks_forward() {
        let v1 = open(json!({"a": {"type": "string"}, "note": {"type": "string"}}));
        let v2 = open(json!({"a": {"type": "string"}}));
        assert!(issues(Compatibility::Backward, &[v1.clone()], &v2).is_empty());
        let found = issues(Compatibility::Forward, &[v1], &v2);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].1, "/properties/note");
        assert_eq!(
            found[0].2,
            format!(
                "property \"note\" removed from an open content model: the new schema accepts \
                 \"note\" with any value, which version 1 refuses (type widened from [string] to \
                 any type): {FORW1}"
            )
        );
    }

    #[test]
    fn closed_content_model_adding_optional_is_backward_removing_is_forward() {
        let v1 = closed(json!({"a": {"type": "string"}}), json!(["a"]));
        let v2 = closed(
            json!({"a": {"type": "string"}, "note": {"type": "string"}}),
            json!(["a"]),
        );
        assert!(issues(Compatibility::Backward, &[v1.clone()], &v2).is_empty());
        assert_eq!(
            paths(Compatibility::Forward, &[v1.clone()], &v2),
            vec!["/properties/note"]
        );
        // Removing "note" again: old data may carry it, the closed new schema refuses it.
        assert_eq!(
            issues(Compatibility::Backward, &[v2.clone()], &v1),
            vec![(
                1,
                "/properties/note".to_owned(),
                format!(
                    "property \"note\" removed while the new schema has \
                     \"additionalProperties\": false: {BACK1}"
                )
            )]
        );
        assert!(issues(Compatibility::Forward, &[v2], &v1).is_empty());
    }

    #[test]
    fn closing_and_opening_the_content_model() {
        let v1 = json!({"type": "object"});
        let v2 = json!({"type": "object", "additionalProperties": false});
        assert_eq!(
            issues(Compatibility::Backward, &[v1.clone()], &v2),
            vec![(
                1,
                "/additionalProperties".to_owned(),
                format!(
                    "the content model was closed (\"additionalProperties\": false): version 1 \
                     accepts properties the new schema does not declare: {BACK1}"
                )
            )]
        );
        assert!(issues(Compatibility::Forward, &[v1.clone()], &v2).is_empty());
        assert_eq!(
            paths(Compatibility::Forward, &[v2], &v1),
            vec!["/additionalProperties"]
        );
    }

    #[test]
    fn partially_open_content_model_uses_the_patterns() {
        let v1 = json!({
            "type": "object",
            "properties": {"a": {"type": "string"}},
            "patternProperties": {"^x_": {"type": "string"}},
            "additionalProperties": false
        });
        // "amount" matches no pattern: as in a closed model, adding it is backward compatible.
        let mut v2 = v1.clone();
        v2["properties"]["amount"] = json!({"type": "number"});
        assert!(issues(Compatibility::Backward, &[v1.clone()], &v2).is_empty());
        assert_eq!(
            paths(Compatibility::Forward, &[v1.clone()], &v2),
            vec!["/properties/amount"]
        );
        // "x_count" matches ^x_: old data may hold a string there.
        let mut v3 = v1.clone();
        v3["properties"]["x_count"] = json!({"type": "integer"});
        assert_eq!(
            issues(Compatibility::Backward, &[v1.clone()], &v3),
            vec![(
                1,
                "/properties/x_count/type".to_owned(),
                format!("type changed from [string] to [integer]: {BACK1}")
            )]
        );
        // Narrowing x_count within the pattern's schema is fine forward.
        let mut v4 = v1.clone();
        v4["properties"]["x_code"] = json!({"type": "string", "maxLength": 3});
        assert!(issues(Compatibility::Forward, &[v1.clone()], &v4).is_empty());
        // Changing a pattern's schema is compared like any other schema.
        let mut v5 = v1.clone();
        v5["patternProperties"]["^x_"] = json!({"type": "string", "maxLength": 3});
        assert_eq!(
            paths(Compatibility::Backward, &[v1], &v5),
            vec!["/patternProperties/^x_/maxLength"]
        );
    }

    #[test]
    fn bounds_lengths_pattern_and_format() {
        let v1 = closed(
            json!({
                "n": {"type": "number", "minimum": 0},
                "code": {"type": "string", "pattern": "^[A-Z]+$", "format": "date"},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5}
            }),
            json!([]),
        );
        let v2 = closed(
            json!({
                "n": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
                "code": {"type": "string", "pattern": "^[A-Z]{2}$", "minLength": 2},
                "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "minItems": 1}
            }),
            json!([]),
        );
        assert_eq!(
            issues(Compatibility::Backward, &[v1.clone()], &v2),
            vec![
                (
                    1,
                    "/properties/code/minLength".to_owned(),
                    format!("minLength tightened from none to 2: {BACK1}")
                ),
                (
                    1,
                    "/properties/code/pattern".to_owned(),
                    format!("pattern changed from \"^[A-Z]+$\" to \"^[A-Z]{{2}}$\": {BACK1}")
                ),
                (
                    1,
                    "/properties/n/exclusiveMinimum".to_owned(),
                    format!("lower bound tightened from minimum 0 to exclusiveMinimum 0: {BACK1}")
                ),
                (
                    1,
                    "/properties/n/maximum".to_owned(),
                    format!("upper bound tightened from none to maximum 100: {BACK1}")
                ),
                (
                    1,
                    "/properties/tags/minItems".to_owned(),
                    format!("minItems tightened from none to 1: {BACK1}")
                ),
                (
                    1,
                    "/properties/tags/items/maxLength".to_owned(),
                    format!("maxLength tightened from none to 10: {BACK1}")
                ),
            ]
        );
        assert_eq!(
            paths(Compatibility::Forward, &[v1], &v2),
            vec![
                "/properties/code/pattern",
                "/properties/code/format",
                "/properties/tags/maxItems"
            ]
        );
        // Looser bounds are backward compatible.
        let a = json!({"type": "integer", "minimum": 1, "maximum": 10, "multipleOf": 4});
        let b = json!({"type": "number", "minimum": 0, "multipleOf": 2});
        assert!(issues(Compatibility::Backward, &[a.clone()], &b).is_empty());
        assert_eq!(
            paths(Compatibility::Forward, &[a], &b),
            vec!["/type", "/minimum", "/maximum", "/multipleOf"]
        );
    }

    #[test]
    fn draft4_boolean_exclusive_bounds() {
        let v1 = json!({"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "minimum": 0});
        let v2 = json!({"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "minimum": 0, "exclusiveMinimum": true});
        assert_eq!(
            issues(Compatibility::Backward, &[v1.clone()], &v2),
            vec![(
                1,
                "/minimum".to_owned(),
                format!("lower bound tightened from minimum 0 to minimum 0 (exclusive): {BACK1}")
            )]
        );
        assert!(issues(Compatibility::Forward, &[v1], &v2).is_empty());
    }

    #[test]
    fn every_incompatible_path_is_reported() {
        let v1 = closed(
            json!({
                "amount": {"type": "number"},
                "status": {"enum": ["open", "closed"]},
                "when": {"type": "string", "format": "date-time"}
            }),
            json!(["amount"]),
        );
        let v2 = closed(
            json!({
                "amount": {"type": "integer"},
                "status": {"enum": ["open"]},
                "when": {"type": "string", "format": "date"},
                "who": {"type": "string"}
            }),
            json!(["amount", "who"]),
        );
        assert_eq!(
            paths(Compatibility::Backward, &[v1], &v2),
            vec![
                "/required",
                "/properties/amount/type",
                "/properties/status/enum",
                "/properties/when/format"
            ]
        );
    }

    #[test]
    fn transitive_modes_check_every_version() {
        // Version 2 was registered under NONE and broke version 1; version 3 only adds an
        // optional property to version 2.
        let v1 = closed(json!({"code": {"type": "string"}}), json!(["code"]));
        let v2 = closed(json!({"code": {"type": "integer"}}), json!(["code"]));
        let v3 = closed(
            json!({"code": {"type": "integer"}, "note": {"type": "string"}}),
            json!(["code"]),
        );
        let history = [v1, v2];
        assert!(issues(Compatibility::Backward, &history, &v3).is_empty());
        assert_eq!(
            issues(Compatibility::BackwardTransitive, &history, &v3),
            vec![(
                1,
                "/properties/code/type".to_owned(),
                format!("type changed from [string] to [integer]: {BACK1}")
            )]
        );
        // Forward: v3's "note" is refused by the closed v2 (and v1), and v3's integer code by
        // v1 only.
        assert_eq!(
            issues(Compatibility::Forward, &history, &v3)
                .into_iter()
                .map(|(v, p, _)| (v, p))
                .collect::<Vec<_>>(),
            vec![(2, "/properties/note".to_owned())]
        );
        assert_eq!(
            issues(Compatibility::ForwardTransitive, &history, &v3)
                .into_iter()
                .map(|(v, p, _)| (v, p))
                .collect::<Vec<_>>(),
            vec![
                (1, "/properties/code/type".to_owned()),
                (1, "/properties/note".to_owned()),
                (2, "/properties/note".to_owned())
            ]
        );
        assert_eq!(
            issues(Compatibility::FullTransitive, &history, &v3)
                .into_iter()
                .map(|(v, p, _)| (v, p))
                .collect::<Vec<_>>(),
            vec![
                (1, "/properties/code/type".to_owned()),
                (1, "/properties/code/type".to_owned()),
                (1, "/properties/note".to_owned()),
                (2, "/properties/note".to_owned())
            ]
        );
        assert_eq!(
            paths(Compatibility::Full, &history, &v3),
            vec!["/properties/note"]
        );
        assert!(issues(Compatibility::None, &history, &v3).is_empty());
        assert!(issues(Compatibility::FullTransitive, &[], &v3).is_empty());
    }

    #[test]
    fn refs_are_followed_and_reported_in_the_new_schema() {
        let v1 = json!({
            "$defs": {"Money": {"type": "number", "minimum": 0}},
            "type": "object",
            "properties": {"amount": {"$ref": "#/$defs/Money"}},
            "additionalProperties": false
        });
        let v2 = json!({
            "$defs": {"Money": {"type": "integer", "minimum": 1, "description": "cents"}},
            "type": "object",
            "properties": {"amount": {"$ref": "#/$defs/Money"}},
            "additionalProperties": false
        });
        assert_eq!(
            issues(Compatibility::Backward, &[v1.clone()], &v2),
            vec![
                (
                    1,
                    "/$defs/Money/type".to_owned(),
                    format!("type narrowed from [number] to [integer]: {BACK1}")
                ),
                (
                    1,
                    "/$defs/Money/minimum".to_owned(),
                    format!("lower bound tightened from minimum 0 to minimum 1: {BACK1}")
                )
            ]
        );
        assert!(issues(Compatibility::Forward, &[v1.clone()], &v2).is_empty());
        // Inlining a definition changes nothing; draft 7 "definitions" work the same way.
        let inline = json!({
            "type": "object",
            "properties": {"amount": {"type": "number", "minimum": 0}},
            "additionalProperties": false
        });
        assert!(issues(Compatibility::Full, &[v1.clone()], &inline).is_empty());
        let draft7 = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "definitions": {"Money": {"type": "number", "minimum": 0}},
            "type": "object",
            "properties": {"amount": {"$ref": "#/definitions/Money"}},
            "additionalProperties": false
        });
        assert!(issues(Compatibility::Full, &[v1], &draft7).is_empty());
    }

    #[test]
    fn recursive_schemas_are_compared_without_looping() {
        let tree = |value_type: &str| {
            json!({
                "$defs": {"node": {
                    "type": "object",
                    "properties": {
                        "value": {"type": value_type},
                        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}
                    }
                }},
                "$ref": "#/$defs/node"
            })
        };
        assert!(
            issues(
                Compatibility::FullTransitive,
                &[tree("integer")],
                &tree("integer")
            )
            .is_empty()
        );
        assert!(issues(Compatibility::Backward, &[tree("integer")], &tree("number")).is_empty());
        assert_eq!(
            paths(Compatibility::Forward, &[tree("integer")], &tree("number")),
            vec!["/$defs/node/properties/value/type"]
        );
        // Registered for real, too.
        let mut registry = SchemaRegistry::new();
        registry.register(TYPE, tree("integer"), 1).unwrap();
        registry.register(TYPE, tree("number"), 2).unwrap();
        assert_eq!(
            registry.validate_event(
                TYPE,
                None,
                Some(&json!({"value": 1.5, "children": [{"value": 2, "children": []}]}))
            ),
            Ok(2)
        );
        let err = registry
            .validate_event(
                TYPE,
                Some("1"),
                Some(&json!({"value": 1, "children": [{"value": 1.5}]})),
            )
            .unwrap_err();
        match err {
            SchemaError::Validation {
                version, issues, ..
            } => {
                assert_eq!(version, 1);
                assert_eq!(issues.len(), 1);
                assert_eq!(issues[0].instance_path, "/children/0/value");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn cyclic_and_deep_schemas_do_not_panic() {
        let cycle = json!({
            "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
            "$ref": "#/$defs/a"
        });
        let err = CompiledSchema::compile(&cycle).unwrap_err();
        assert_eq!(err.http_status(), 400);
        assert!(
            err.to_string()
                .contains("#/$defs/a → #/$defs/b → #/$defs/a"),
            "{err}"
        );
        let self_ref = json!({"type": "object", "anyOf": [{"$ref": "#"}]});
        assert!(
            CompiledSchema::compile(&self_ref)
                .unwrap_err()
                .to_string()
                .contains("$ref cycle")
        );
        // check_compatibility gets any value: it reports instead of looping.
        let found = issues(
            Compatibility::Full,
            &[cycle.clone()],
            &json!({"type": "string"}),
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().all(|(_, p, m)| p.is_empty()
            && m.starts_with("cannot prove compatibility: $ref cycle through /$defs/")));
        assert!(issues(Compatibility::Full, &[cycle.clone()], &cycle).is_empty());

        // Nested deeper than the limit: refused, and reported by the checker.
        let mut deep = json!({"type": "string"});
        for _ in 0..200 {
            deep = json!({"type": "object", "properties": {"x": deep}});
        }
        let err = CompiledSchema::compile(&deep).unwrap_err();
        assert!(err.to_string().contains("deeper than 64 levels"), "{err}");
        let found = issues(Compatibility::Full, &[deep.clone()], &deep);
        assert_eq!(found.len(), 2);
        assert!(found[0].2.contains("nests deeper than 64 levels"));

        // Within the limit, nesting is compared down to the leaf.
        let nest = |leaf: &str| {
            let mut schema = json!({"type": leaf});
            for _ in 0..30 {
                schema = json!({"type": "object", "properties": {"x": schema}});
            }
            schema
        };
        CompiledSchema::compile(&nest("integer")).unwrap();
        let found = paths(Compatibility::Forward, &[nest("integer")], &nest("number"));
        assert_eq!(found, vec![format!("{}/type", "/properties/x".repeat(30))]);

        // A long chain of definitions, each holding the next: the comparison gives up cleanly.
        let chain = |leaf: &str| {
            let mut defs = Map::new();
            for i in 0..300 {
                defs.insert(
                    format!("d{i}"),
                    json!({"type": "object", "properties": {"next": {"$ref": format!("#/$defs/d{}", i + 1)}}}),
                );
            }
            defs.insert("d300".to_owned(), json!({"type": leaf}));
            json!({"$defs": defs, "$ref": "#/$defs/d0"})
        };
        CompiledSchema::compile(&chain("integer")).unwrap();
        assert!(issues(Compatibility::Full, &[chain("integer")], &chain("integer")).is_empty());
        let found = issues(
            Compatibility::Forward,
            &[chain("integer")],
            &chain("number"),
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .2
                .starts_with("cannot prove compatibility: the comparison nests too deep")
        );
    }

    #[test]
    fn comparisons_that_explode_give_up_conservatively() {
        let branches = |keyword: &str, inner: &str| -> Value {
            Value::Array(
                (1..=40)
                    .map(|i| {
                        json!({
                            "type": "object",
                            "properties": {"x": {"anyOf": (1..=40)
                                .map(|j| json!({"type": "string", inner: i * 100 + j}))
                                .collect::<Vec<_>>()}},
                            keyword: i
                        })
                    })
                    .collect(),
            )
        };
        let old = json!({"anyOf": branches("minProperties", "minLength")});
        let new = json!({"anyOf": branches("maxProperties", "maxLength")});
        let found = issues(Compatibility::Backward, &[old], &new);
        assert!(
            found.iter().any(|(_, path, message)| path.is_empty()
                && message.starts_with(
                    "cannot prove compatibility: the schemas are too complex to compare"
                )),
            "{found:?}"
        );
    }

    #[test]
    fn any_of_and_one_of() {
        let nullable = json!({"anyOf": [{"type": "string"}, {"type": "null"}]});
        let string = json!({"type": "string"});
        // Making a string nullable is backward compatible, not forward compatible.
        assert!(issues(Compatibility::Backward, &[string.clone()], &nullable).is_empty());
        assert_eq!(
            issues(Compatibility::Forward, &[string.clone()], &nullable),
            vec![(
                1,
                "/anyOf/1/type".to_owned(),
                format!("type changed from [string] to [null]: {FORW1}")
            )]
        );
        // No branch of the new anyOf covers old strings longer than 5.
        let short_nullable =
            json!({"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}]});
        assert_eq!(
            issues(
                Compatibility::Backward,
                &[nullable.clone()],
                &short_nullable
            ),
            vec![(
                1,
                "/anyOf".to_owned(),
                format!(
                    "no branch of anyOf in the new schema accepts every value version 1 allows \
                     here; the closest is branch 0, where /anyOf/0/maxLength: maxLength \
                     tightened from none to 5: {BACK1}"
                )
            )]
        );
        // oneOf with a discriminator: adding a branch is backward compatible.
        let branch = |kind: &str, extra: Value| {
            json!({
                "type": "object",
                "properties": {"kind": {"const": kind}, "extra": extra},
                "required": ["kind"]
            })
        };
        let v1 = json!({"oneOf": [branch("a", json!({"type": "string"})), branch("b", json!({"type": "number"}))]});
        let v2 = json!({"oneOf": [
            branch("a", json!({"type": "string"})),
            branch("b", json!({"type": "number"})),
            branch("c", json!({}))
        ]});
        assert!(issues(Compatibility::Backward, &[v1.clone()], &v2).is_empty());
        let found = issues(Compatibility::Forward, &[v1.clone()], &v2);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].1, "/oneOf/2");
        assert!(found[0].2.starts_with(
            "no branch of oneOf in version 1 accepts every value the new schema allows here"
        ));
        // Overlapping oneOf branches cannot be proven.
        let overlapping =
            json!({"oneOf": [{"type": "string"}, {"type": "string", "maxLength": 3}]});
        let found = issues(
            Compatibility::Backward,
            &[json!({"type": "string", "minLength": 9})],
            &overlapping,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].1, "/oneOf");
        assert!(found[0].2.starts_with(
            "cannot prove compatibility: the values version 1 allows here match branch 0 of oneOf"
        ));
        // allOf parts are merged.
        let all_of = json!({"allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}},
            {"required": ["a"]}
        ]});
        let flat =
            json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]});
        assert!(issues(Compatibility::Full, &[all_of.clone()], &flat).is_empty());
        assert!(issues(Compatibility::Full, &[flat], &all_of).is_empty());
    }

    #[test]
    fn enumerated_values_are_checked_one_by_one() {
        // A new constraint that the only old values satisfy is fine.
        let v1 = json!({"enum": ["ab", "cd"]});
        assert!(
            issues(
                Compatibility::Backward,
                &[v1.clone()],
                &json!({"type": "string", "maxLength": 2})
            )
            .is_empty()
        );
        assert_eq!(
            issues(
                Compatibility::Backward,
                &[v1],
                &json!({"type": "string", "maxLength": 1})
            ),
            vec![(
                1,
                "/maxLength".to_owned(),
                format!(
                    "value(s) [\"ab\", \"cd\"] allowed by the enum of version 1 are refused by \
                     the new schema (\"ab\" is longer than 1 character): {BACK1}"
                )
            )]
        );
        assert_eq!(
            paths(
                Compatibility::Backward,
                &[json!({"type": "boolean"})],
                &json!({"const": true})
            ),
            vec!["/const"]
        );
        assert_eq!(
            issues(
                Compatibility::Backward,
                &[json!({"const": "a"})],
                &json!({"const": "b"})
            ),
            vec![(
                1,
                "/const".to_owned(),
                format!("const changed from \"a\" to \"b\": {BACK1}")
            )]
        );
        assert_eq!(
            issues(
                Compatibility::Backward,
                &[json!({"type": "string"})],
                &json!({"enum": ["a", "b"]})
            ),
            vec![(
                1,
                "/enum".to_owned(),
                format!(
                    "enum [\"a\",\"b\"] added (version 1 did not restrict the values to a list): \
                     {BACK1}"
                )
            )]
        );
        // A value list checked against a part of a conjunction.
        let any = json!({"anyOf": [{"const": "ab"}, {"const": "abcd"}]});
        let conj = json!({"allOf": [{"type": "string"}], "maxLength": 3});
        assert_eq!(
            paths(Compatibility::Backward, &[any], &conj),
            vec!["/maxLength"]
        );
    }

    #[test]
    fn other_keywords_must_stay_identical_and_annotations_are_ignored() {
        let v1 = json!({"type": "string", "title": "Code", "x-unit": "none"});
        let v2 = json!({
            "type": "string",
            "title": "Code (new)",
            "description": "changed",
            "examples": ["x"],
            "default": "y",
            "$comment": "c",
            "x-unit": "EUR"
        });
        assert!(issues(Compatibility::FullTransitive, &[v1.clone()], &v2).is_empty());
        let v3 = json!({"type": "string", "not": {"const": "x"}});
        assert_eq!(
            issues(Compatibility::Full, &[v1.clone()], &v3),
            vec![(
                1,
                "/not".to_owned(),
                format!(
                    "cannot prove compatibility: keyword \"not\" added ({{\"const\":\"x\"}}): {BACK1}"
                )
            )]
        );
        let v4 = json!({"type": "object", "propertyNames": {"maxLength": 3}});
        let v5 = json!({"type": "object", "propertyNames": {"maxLength": 4}});
        assert_eq!(
            paths(Compatibility::Full, &[v4.clone()], &v5),
            vec!["/propertyNames", "/propertyNames"]
        );
        assert!(issues(Compatibility::Full, &[v4.clone()], &v4).is_empty());
        // propertyNames only matters for objects: irrelevant when the type excludes them.
        let v6 = json!({"type": "string", "propertyNames": {"maxLength": 4}});
        assert!(issues(Compatibility::Backward, &[json!({"type": "string"})], &v6).is_empty());
    }

    #[test]
    fn true_and_false_schemas() {
        assert!(
            issues(
                Compatibility::Backward,
                &[json!(false)],
                &json!({"type": "string"})
            )
            .is_empty()
        );
        assert!(
            issues(
                Compatibility::Backward,
                &[json!({"type": "string"})],
                &json!(true)
            )
            .is_empty()
        );
        assert_eq!(
            issues(
                Compatibility::Backward,
                &[json!(true)],
                &json!({"type": "string"})
            ),
            vec![(
                1,
                "/type".to_owned(),
                format!("type narrowed from any type to [string]: {BACK1}")
            )]
        );
        assert_eq!(
            issues(
                Compatibility::Backward,
                &[json!({"type": "string"})],
                &json!(false)
            ),
            vec![(
                1,
                String::new(),
                format!("the schema became false, which accepts no value: {BACK1}")
            )]
        );
        // A property set to false in the old schema never appears in old data.
        let v1 = open(json!({"legacy": false}));
        let v2 = open(json!({"legacy": {"type": "string"}}));
        assert!(issues(Compatibility::Backward, &[v1], &v2).is_empty());
    }

    // ---- compiling and validating ------------------------------------------------------------

    #[test]
    fn compile_refuses_what_it_cannot_use() {
        let reason = |schema: Value| match CompiledSchema::compile(&schema) {
            Err(SchemaError::Invalid { reason }) => reason,
            other => panic!("expected Invalid, got {other:?}"),
        };
        assert_eq!(
            reason(json!(42)),
            "a JSON Schema is an object or a boolean, not a number"
        );
        assert_eq!(
            reason(json!([{"type": "string"}])),
            "a JSON Schema is an object or a boolean, not an array"
        );
        assert!(reason(json!({"type": "strin"})).starts_with("at /type: "));
        assert!(reason(json!({"minimum": "zero"})).starts_with("at /minimum: "));
        assert!(reason(json!({"pattern": "(("})).starts_with("at /pattern: "));
        let remote = reason(json!({"properties": {"a": {"$ref": "https://example.org/a.json"}}}));
        assert!(
            remote.starts_with(
                "$ref \"https://example.org/a.json\" at /properties/a refers to another document"
            ),
            "{remote}"
        );
        assert!(reason(json!({"$ref": "other.json#/x"})).contains("refers to another document"));
        assert!(reason(json!({"$ref": "#money"})).contains("refers to an anchor"));
        assert!(reason(json!({"$ref": "#/$defs/missing"})).contains("/$defs/missing"));
        assert!(
            reason(json!({"$defs": {"a": {"$id": "https://x/a"}}})).starts_with("$id at /$defs/a")
        );
        assert!(
            reason(json!({"$schema": "https://example.org/my-dialect"})).contains("my-dialect")
        );
        // What is fine.
        for good in [
            json!(true),
            json!(false),
            json!({}),
            json!({"$id": "https://bus.example/schemas/x", "type": "object"}),
            json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "integer"}),
            json!({"$defs": {"a": {"type": "string"}}, "$ref": "#/$defs/a"}),
            json!({"$defs": {"a b": {"type": "string"}}, "$ref": "#/$defs/a%20b"}),
        ] {
            assert!(CompiledSchema::compile(&good).is_ok(), "{good}");
        }
    }

    #[test]
    fn validation_lists_issues_with_instance_paths() {
        let schema = CompiledSchema::compile(&json!({
            "type": "object",
            "properties": {
                "amount": {"type": "integer"},
                "when": {"type": "string", "format": "date-time"},
                "lines": {"type": "array", "items": {"type": "object", "required": ["dish"]}}
            },
            "required": ["amount", "school"]
        }))
        .unwrap();
        assert!(
            schema
                .validate(&json!({"amount": 3, "school": "x", "when": "2025-03-01T12:00:00Z"}))
                .is_ok()
        );
        let found = schema
            .validate(
                &json!({"amount": 1.5, "when": "yesterday", "lines": [{"dish": "pasta"}, {}]}),
            )
            .unwrap_err();
        let mut summary: Vec<(String, String)> = found
            .iter()
            .map(|i| (i.instance_path.clone(), i.message.clone()))
            .collect();
        summary.sort();
        assert_eq!(
            summary,
            vec![
                (
                    String::new(),
                    "\"school\" is a required property".to_owned()
                ),
                (
                    "/amount".to_owned(),
                    "1.5 is not of type \"integer\"".to_owned()
                ),
                (
                    "/lines/1".to_owned(),
                    "\"dish\" is a required property".to_owned()
                ),
                (
                    "/when".to_owned(),
                    "\"yesterday\" is not a \"date-time\"".to_owned()
                ),
            ]
        );
        let amount = found.iter().find(|i| i.instance_path == "/amount").unwrap();
        assert_eq!(amount.schema_path, "/properties/amount/type");
        assert_eq!(
            amount.to_string(),
            "/amount: 1.5 is not of type \"integer\""
        );

        // At most MAX_VALIDATION_ISSUES, the last one counting the rest.
        let strings =
            CompiledSchema::compile(&json!({"type": "array", "items": {"type": "string"}}))
                .unwrap();
        let found = strings
            .validate(&json!((0..50).collect::<Vec<_>>()))
            .unwrap_err();
        assert_eq!(found.len(), MAX_VALIDATION_ISSUES);
        assert_eq!(found[0].instance_path, "/0");
        assert_eq!(found[18].instance_path, "/18");
        assert_eq!(found[19].message, "31 more validation errors not listed");
    }

    // ---- the registry ------------------------------------------------------------------------

    fn meal_v1() -> Value {
        closed(
            json!({"school": {"type": "string"}, "meals": {"type": "integer", "minimum": 0}}),
            json!(["school", "meals"]),
        )
    }

    fn meal_v2() -> Value {
        closed(
            json!({
                "school": {"type": "string"},
                "meals": {"type": "integer", "minimum": 0},
                "diet": {"enum": ["standard", "vegetarian"]}
            }),
            json!(["school", "meals"]),
        )
    }

    #[test]
    fn registering_versions() {
        let mut registry = SchemaRegistry::new();
        assert_eq!(
            registry.register(TYPE, meal_v1(), 100),
            Ok(Registered {
                version: 1,
                created: true
            })
        );
        // Idempotent: the same schema again is version 1, nothing created.
        assert_eq!(
            registry.register(TYPE, meal_v1(), 200),
            Ok(Registered {
                version: 1,
                created: false
            })
        );
        assert_eq!(
            registry.register(TYPE, meal_v2(), 300),
            Ok(Registered {
                version: 2,
                created: true
            })
        );
        assert_eq!(
            registry.register("a.first.Type", json!({"type": "null"}), 400),
            Ok(Registered {
                version: 1,
                created: true
            })
        );
        let versions = registry.versions(TYPE).unwrap();
        assert_eq!(
            versions
                .iter()
                .map(|v| (v.version, v.registered_micros))
                .collect::<Vec<_>>(),
            vec![(1, 100), (2, 300)]
        );
        assert_eq!(registry.get(TYPE, 1).unwrap().schema, meal_v1());
        assert_eq!(registry.get(TYPE, 2).unwrap().schema, meal_v2());
        assert!(registry.get(TYPE, 0).is_none() && registry.get(TYPE, 3).is_none());
        assert_eq!(registry.latest(TYPE).unwrap().version, 2);
        assert!(registry.versions("no.such.Type").is_none());
        assert_eq!(
            registry.types().collect::<Vec<_>>(),
            vec!["a.first.Type", TYPE]
        );
        assert!(
            registry
                .latest(TYPE)
                .unwrap()
                .compiled()
                .is_valid(&json!({"school": "x", "meals": 1}))
        );
        let listed = serde_json::to_value(registry.versions(TYPE).unwrap()).unwrap();
        assert_eq!(
            listed[1],
            json!({"version": 2, "schema": meal_v2(), "registered_micros": 300})
        );
        // Rolling back to version 1's schema is a new version (compatible: it drops an
        // optional property... of a closed model, which BACKWARD refuses).
        let err = registry.register(TYPE, meal_v1(), 500).unwrap_err();
        assert_eq!(err.http_status(), 409);
        registry
            .set_compatibility(TYPE, Compatibility::None)
            .unwrap();
        assert_eq!(
            registry.register(TYPE, meal_v1(), 500),
            Ok(Registered {
                version: 3,
                created: true
            })
        );
    }

    #[test]
    fn incompatible_schemas_are_refused_with_their_paths() {
        let mut registry = SchemaRegistry::new();
        registry.register(TYPE, meal_v1(), 1).unwrap();
        let broken = closed(
            json!({"school": {"type": "string"}, "meals": {"type": "number"}, "day": {"type": "string"}}),
            json!(["school", "meals", "day"]),
        );
        registry
            .set_compatibility(TYPE, Compatibility::Full)
            .unwrap();
        let err = registry.register(TYPE, broken.clone(), 2).unwrap_err();
        assert_eq!(err.http_status(), 409);
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "the new schema of event type \"{TYPE}\" is not FULL compatible with version 1: \
                 /required: property \"day\" became required"
            )),
            "{text}"
        );
        assert!(
            text.contains("/properties/meals/type: type widened from [integer] to [number]"),
            "{text}"
        );
        match err {
            SchemaError::Incompatible {
                event_type,
                mode,
                against_versions,
                issues,
            } => {
                assert_eq!(event_type, TYPE);
                assert_eq!(mode, Compatibility::Full);
                assert_eq!(against_versions, vec![1]);
                assert_eq!(
                    issues.iter().map(|i| i.path.as_str()).collect::<Vec<_>>(),
                    vec![
                        "/required",
                        "/properties/day",
                        "/properties/meals/type",
                        "/properties/meals/minimum"
                    ]
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(registry.latest(TYPE).unwrap().version, 1);
        assert!(registry.check(TYPE, &broken).is_err());
        assert!(registry.check(TYPE, &meal_v1()).is_ok());
        // Replaying a stored registration skips the check.
        assert_eq!(
            registry.restore(TYPE, broken, 2),
            Ok(Registered {
                version: 2,
                created: true
            })
        );
        // An invalid schema is refused whatever the mode.
        registry
            .set_compatibility(TYPE, Compatibility::None)
            .unwrap();
        let err = registry.register(TYPE, json!({"type": 7}), 3).unwrap_err();
        assert!(matches!(err, SchemaError::Invalid { .. }));
        assert_eq!(err.http_status(), 400);
    }

    #[test]
    fn compatibility_modes_per_type() {
        let mut registry = SchemaRegistry::new();
        assert_eq!(registry.compatibility(TYPE), Compatibility::Backward);
        registry
            .set_compatibility(TYPE, Compatibility::Forward)
            .unwrap();
        assert_eq!(registry.compatibility(TYPE), Compatibility::Forward);
        assert_eq!(
            registry.compatibility("other.Type"),
            Compatibility::Backward
        );
        // A mode alone does not make the type known.
        assert_eq!(registry.types().count(), 0);
        registry.register(TYPE, meal_v1(), 1).unwrap();
        // FORWARD: adding an optional property to the closed model is refused.
        let err = registry.register(TYPE, meal_v2(), 2).unwrap_err();
        match &err {
            SchemaError::Incompatible { issues, .. } => {
                assert_eq!(issues.len(), 1);
                assert_eq!(issues[0].path, "/properties/diet");
            }
            other => panic!("unexpected {other:?}"),
        }
        registry
            .set_compatibility(TYPE, Compatibility::Backward)
            .unwrap();
        assert_eq!(registry.register(TYPE, meal_v2(), 2).unwrap().version, 2);
        assert!(
            registry
                .set_compatibility("bad type", Compatibility::None)
                .is_err()
        );
    }

    #[test]
    fn event_type_names() {
        for good in [
            TYPE,
            "com.github.pull_request.opened",
            "a",
            "città.evento",
            &"x".repeat(256),
        ] {
            assert!(validate_event_type(good).is_ok(), "{good}");
        }
        let reason = |name: &str| match validate_event_type(name) {
            Err(SchemaError::InvalidEventType { reason, .. }) => reason,
            other => panic!("expected a refusal of {name:?}, got {other:?}"),
        };
        assert_eq!(reason(""), "the name is empty");
        assert_eq!(
            reason(&"x".repeat(257)),
            "the name is 257 characters long, at most 256 are allowed"
        );
        assert!(reason("meal ordered").starts_with("character 5 (' ') is whitespace"));
        assert!(reason("meal\tordered").contains("'\\t'"));
        assert!(reason("meal\u{7}").starts_with("character 5 ('\\u{7}')"));
        let mut registry = SchemaRegistry::new();
        let err = registry.register("meal ordered", json!({}), 1).unwrap_err();
        assert_eq!(err.http_status(), 400);
        assert!(
            err.to_string()
                .starts_with("invalid event type \"meal ordered\": ")
        );
    }

    #[test]
    fn events_of_unknown_types_are_refused_with_422() {
        let registry = SchemaRegistry::new();
        let err = registry
            .validate_event(TYPE, None, Some(&json!({})))
            .unwrap_err();
        assert_eq!(err, SchemaError::UnknownType(TYPE.to_owned()));
        assert_eq!(err.http_status(), 422);
        assert_eq!(
            err.to_string(),
            format!(
                "no schema is registered for event type \"{TYPE}\": register one with POST \
                 /api/v1/bus/schemas/{TYPE} (the JSON Schema as the body) before publishing \
                 events of this type"
            )
        );
    }

    #[test]
    fn events_are_validated_against_the_version_they_name() {
        let mut registry = SchemaRegistry::new();
        registry.register(TYPE, meal_v1(), 1).unwrap();
        registry.register(TYPE, meal_v2(), 2).unwrap();
        let vegetarian = json!({"school": "Mazzoni", "meals": 120, "diet": "vegetarian"});
        let plain = json!({"school": "Mazzoni", "meals": 120});
        assert_eq!(
            registry.validate_event(TYPE, None, Some(&vegetarian)),
            Ok(2)
        );
        for (dataschema, version) in [
            ("1", 1),
            ("latest", 2),
            (
                "https://bus.example/api/v1/bus/schemas/it.prato.school.canteen.MealOrdered/versions/1",
                1,
            ),
            (
                "/api/v1/bus/schemas/it.prato.school.canteen.MealOrdered/versions/2/",
                2,
            ),
            ("https://bus.example/schemas/meal?format=json&version=1", 1),
            ("/registry/versions/1#top", 1),
        ] {
            assert_eq!(
                registry.validate_event(TYPE, Some(dataschema), Some(&plain)),
                Ok(version),
                "{dataschema}"
            );
        }
        // Version 1 is closed: "diet" is refused there.
        let err = registry
            .validate_event(TYPE, Some("1"), Some(&vegetarian))
            .unwrap_err();
        assert_eq!(err.http_status(), 400);
        match &err {
            SchemaError::Validation {
                event_type,
                version,
                issues,
            } => {
                assert_eq!((event_type.as_str(), *version), (TYPE, 1));
                assert_eq!(issues.len(), 1);
                assert_eq!(issues[0].instance_path, "");
                assert!(
                    issues[0].message.contains("'diet' was unexpected"),
                    "{}",
                    issues[0].message
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().starts_with(&format!(
            "event data does not match version 1 of the schema of event type \"{TYPE}\": (root): "
        )));
        // Several issues are all listed.
        let err = registry
            .validate_event(
                TYPE,
                None,
                Some(&json!({"school": 3, "meals": -1, "diet": "vegan"})),
            )
            .unwrap_err();
        match err {
            SchemaError::Validation { issues, .. } => {
                let mut at: Vec<&str> = issues.iter().map(|i| i.instance_path.as_str()).collect();
                at.sort_unstable();
                assert_eq!(at, vec!["/diet", "/meals", "/school"]);
            }
            other => panic!("unexpected {other:?}"),
        }
        // Absent data validates as null.
        let err = registry.validate_event(TYPE, None, None).unwrap_err();
        match err {
            SchemaError::Validation { issues, .. } => {
                assert_eq!(issues[0].message, "null is not of type \"object\"");
            }
            other => panic!("unexpected {other:?}"),
        }
        registry
            .register("it.prato.Ping", json!({"type": "null"}), 3)
            .unwrap();
        assert_eq!(registry.validate_event("it.prato.Ping", None, None), Ok(1));
        // Unknown version: 422, naming it.
        let err = registry
            .validate_event(TYPE, Some("7"), Some(&plain))
            .unwrap_err();
        assert_eq!(
            err,
            SchemaError::UnknownVersion {
                event_type: TYPE.to_owned(),
                version: 7,
                latest: 2
            }
        );
        assert_eq!(err.http_status(), 422);
        assert!(
            err.to_string()
                .contains("has no schema version 7 (the latest is 2)")
        );
        // dataschema values that name no version, or another type's schema.
        for (dataschema, reason) in [
            (
                "https://example.org/schemas/meal.json",
                "it names no version of the type's schema",
            ),
            ("0", "\"0\" is not a version number (1, 2, …)"),
            ("v2", "\"v2\" is not a version number (1, 2, …)"),
            ("?version=x", "\"x\" is not a version number (1, 2, …)"),
            ("   ", "it is empty"),
            (
                "/api/v1/bus/schemas/it.prato.Ping/versions/1",
                "it names the schema of event type \"it.prato.Ping\"",
            ),
        ] {
            match registry.validate_event(TYPE, Some(dataschema), Some(&plain)) {
                Err(e @ SchemaError::InvalidDataschema { .. }) => {
                    assert_eq!(e.http_status(), 400);
                    let SchemaError::InvalidDataschema { reason: got, .. } = &e else {
                        unreachable!()
                    };
                    assert_eq!(got, reason, "{dataschema}");
                }
                other => panic!("{dataschema}: unexpected {other:?}"),
            }
        }
        // A percent-encoded type in the URI is decoded before the comparison.
        registry.register("it.prato.a b", json!({}), 4).unwrap_err();
        registry.register("it.prato.a%b", json!({}), 4).unwrap();
        assert_eq!(
            registry.validate_event(
                "it.prato.a%b",
                Some("/schemas/it.prato.a%25b/versions/1"),
                None
            ),
            Ok(1)
        );
    }

    #[test]
    fn cloud_events_are_validated_by_type_dataschema_and_data() {
        let mut registry = SchemaRegistry::new();
        registry.register(TYPE, meal_v1(), 1).unwrap();
        let event = CloudEvent::new("e-1", "/prato/canteen", TYPE)
            .with_data(json!({"school": "Mazzoni", "meals": 3}));
        assert_eq!(registry.validate_cloud_event(&event), Ok(1));
        let mut wrong = event.clone().with_data(json!({"school": "Mazzoni"}));
        assert!(matches!(
            registry.validate_cloud_event(&wrong),
            Err(SchemaError::Validation { .. })
        ));
        wrong.dataschema = Some("9".to_owned());
        assert!(matches!(
            registry.validate_cloud_event(&wrong),
            Err(SchemaError::UnknownVersion { version: 9, .. })
        ));
        let other = CloudEvent::new("e-2", "/prato/canteen", "it.prato.Unknown");
        assert_eq!(
            registry
                .validate_cloud_event(&other)
                .unwrap_err()
                .http_status(),
            422
        );
    }

    #[test]
    fn error_statuses() {
        let invalid = SchemaError::Invalid {
            reason: "x".to_owned(),
        };
        assert_eq!(invalid.http_status(), 400);
        let incompatible = SchemaError::Incompatible {
            event_type: TYPE.to_owned(),
            mode: Compatibility::Backward,
            against_versions: vec![1, 2],
            issues: (0..12)
                .map(|i| Incompatibility {
                    against_version: 1,
                    path: format!("/properties/p{i}"),
                    message: "m".to_owned(),
                })
                .collect(),
        };
        assert_eq!(incompatible.http_status(), 409);
        let text = incompatible.to_string();
        assert!(
            text.contains("compatible with versions 1, 2: /properties/p0: m;"),
            "{text}"
        );
        assert!(text.ends_with("/properties/p9: m; and 2 more"), "{text}");
    }
}
