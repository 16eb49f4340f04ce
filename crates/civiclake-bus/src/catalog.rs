//! The service catalog: the organisations on the bus (the comune's offices and the outside
//! operators of public services), their systems (name, owner, contacts, the event types each
//! produces and consumes) and the endpoints those systems expose, each described by the
//! OpenAPI or WSDL document stored with it.
//!
//! Names: an organisation and a system are named with 1–64 letters, digits, `-` and `_`. A
//! system `s` of organisation `o` publishes with the CloudEvents source `/o/s[/...]` on the
//! topic `bus/o/s[/...]`: the organisation is the namespace its credentials reach.
//!
//! The catalog is data held by the bus (replayed from `bus_catalog_events` at start); this
//! module checks what goes in and reads endpoint documents: it takes an OpenAPI 3.x or
//! Swagger 2.0 document (JSON or YAML) or a WSDL 1.1 or 2.0 document and lists its operations.

use crate::schema::validate_event_type;
use crate::subscription::check_name;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Largest endpoint document stored (bytes).
pub const MAX_DOCUMENT: usize = 2 * 1024 * 1024;
/// Event types a system may list as produced or consumed.
const MAX_TYPES: usize = 500;
/// Contacts per organisation or system.
const MAX_CONTACTS: usize = 20;
/// Longest free text (names, descriptions, roles).
const MAX_TEXT: usize = 2000;

const WSDL11: &[u8] = b"http://schemas.xmlsoap.org/wsdl/";
const WSDL20: &[u8] = b"http://www.w3.org/ns/wsdl";

/// A catalog problem, with the HTTP status it maps to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// Bad input (400).
    #[error("{0}")]
    Invalid(String),
    /// No such organisation, system or endpoint (404).
    #[error("{0}")]
    NotFound(String),
    /// It is still in use (409).
    #[error("{0}")]
    Conflict(String),
}

impl CatalogError {
    /// The HTTP status of the error.
    pub fn http_status(&self) -> u16 {
        match self {
            CatalogError::Invalid(_) => 400,
            CatalogError::NotFound(_) => 404,
            CatalogError::Conflict(_) => 409,
        }
    }
}

fn invalid(m: impl Into<String>) -> CatalogError {
    CatalogError::Invalid(m.into())
}

/// Whether an organisation is the comune's own or an outside operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgKind {
    /// An office of the comune.
    #[default]
    Office,
    /// An outside operator of a public service (canteen caterer, transport company...).
    Operator,
}

/// Someone to call about an organisation or a system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// Name of the person or the desk.
    pub name: String,
    /// Their role, e.g. "technical contact".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Telephone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// An organisation on the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organisation {
    /// Its name on the bus (the namespace `bus/<id>/...` and the sources `/<id>/...`).
    #[serde(default)]
    pub id: String,
    /// Its name for people.
    pub name: String,
    /// The comune's office or an outside operator.
    #[serde(default)]
    pub kind: OrgKind,
    /// Its code in the Indice dei domicili digitali della PA (IPA), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipa_code: Option<String>,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Who to call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<Contact>,
}

/// A system of an organisation: a producer or consumer of events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct System {
    /// Its organisation.
    #[serde(default)]
    pub org: String,
    /// Its name on the bus (sources `/<org>/<id>[/...]`).
    #[serde(default)]
    pub id: String,
    /// Its name for people.
    pub name: String,
    /// Who answers for it (a person or an office).
    pub owner: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Who to call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<Contact>,
    /// Event types it publishes.
    #[serde(default)]
    pub produces: Vec<String>,
    /// Event types it needs.
    #[serde(default)]
    pub consumes: Vec<String>,
}

impl System {
    /// Its CloudEvents source: `/<org>/<id>`.
    pub fn source(&self) -> String {
        format!("/{}/{}", self.org, self.id)
    }
}

/// What describes an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    /// An HTTP API described by OpenAPI 3.x (or Swagger 2.0).
    Openapi,
    /// A SOAP service described by WSDL 1.1 or 2.0.
    Wsdl,
}

impl EndpointKind {
    /// The media type the document is served with.
    pub fn media_type(self, format: DocumentFormat) -> &'static str {
        match (self, format) {
            (EndpointKind::Wsdl, _) => "application/wsdl+xml",
            (EndpointKind::Openapi, DocumentFormat::Yaml) => "application/yaml",
            (EndpointKind::Openapi, _) => "application/json",
        }
    }
}

/// How a document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentFormat {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
    /// XML.
    Xml,
}

/// One operation of an endpoint, as its document lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// `operationId` (OpenAPI; else `METHOD path`) or the WSDL operation's name.
    pub name: String,
    /// HTTP method (OpenAPI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Path (OpenAPI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The SOAP action of its binding (WSDL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soap_action: Option<String>,
    /// Input message or element (WSDL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Output message or element (WSDL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Its summary or documentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// What a document says about its endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Described {
    /// OpenAPI or WSDL.
    pub kind: EndpointKind,
    /// JSON, YAML or XML.
    pub format: DocumentFormat,
    /// The document's standard and version, e.g. `OpenAPI 3.0.3`, `WSDL 1.1`.
    pub standard: String,
    /// Its title (`info.title`; the WSDL's name or service name).
    pub title: Option<String>,
    /// The API's version (`info.version`).
    pub api_version: Option<String>,
    /// Where it is reached, as the document says (`servers[0].url`, `soap:address`).
    pub address: Option<String>,
    /// Its operations.
    pub operations: Vec<Operation>,
}

/// An endpoint of a system, with its document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Its organisation.
    pub org: String,
    /// Its system.
    pub system: String,
    /// Its name within the system.
    pub id: String,
    /// Where it is reached: as given, else as its document says.
    pub url: Option<String>,
    /// What the document says.
    pub described: Described,
    /// The document, as given.
    pub document: String,
    /// Hex SHA-256 of the document.
    pub sha256: String,
    /// When it was stored (µs since the epoch).
    pub updated_micros: i64,
}

fn check_text(what: &str, text: &str, required: bool) -> Result<(), CatalogError> {
    if required && text.trim().is_empty() {
        return Err(invalid(format!("{what} is required")));
    }
    if text.len() > MAX_TEXT {
        return Err(invalid(format!(
            "{what} is {} bytes long; at most {MAX_TEXT}",
            text.len()
        )));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(invalid(format!("{what} holds control characters")));
    }
    Ok(())
}

fn check_contacts(what: &str, contacts: &[Contact]) -> Result<(), CatalogError> {
    if contacts.len() > MAX_CONTACTS {
        return Err(invalid(format!(
            "{what}: {} contacts; at most {MAX_CONTACTS}",
            contacts.len()
        )));
    }
    for (i, c) in contacts.iter().enumerate() {
        let at = format!("{what} contact {i}");
        check_text(&format!("{at}: name"), &c.name, true)?;
        if let Some(r) = &c.role {
            check_text(&format!("{at}: role"), r, false)?;
        }
        if let Some(e) = &c.email {
            let ok = e.len() <= 254
                && !e.chars().any(char::is_whitespace)
                && e.split_once('@')
                    .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
            if !ok {
                return Err(invalid(format!("{at}: {e:?} is not an e-mail address")));
            }
        }
        if let Some(p) = &c.phone {
            let digits = p.chars().filter(char::is_ascii_digit).count();
            let ok = (6..=15).contains(&digits)
                && p.chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'));
            if !ok {
                return Err(invalid(format!("{at}: {p:?} is not a telephone number")));
            }
        }
        if c.email.is_none() && c.phone.is_none() {
            return Err(invalid(format!(
                "{at} ({}): give an email or a phone",
                c.name
            )));
        }
    }
    Ok(())
}

fn check_types(what: &str, types: &[String]) -> Result<(), CatalogError> {
    if types.len() > MAX_TYPES {
        return Err(invalid(format!(
            "{what}: {} event types; at most {MAX_TYPES}",
            types.len()
        )));
    }
    for t in types {
        validate_event_type(t).map_err(|e| invalid(format!("{what}: {e}")))?;
    }
    Ok(())
}

fn name_error(e: String) -> CatalogError {
    CatalogError::Invalid(e)
}

/// The organisation and system of a CloudEvents source `/<org>/<system>[/...]`.
pub fn source_parts(source: &str) -> Option<(&str, &str)> {
    let mut parts = source.strip_prefix('/')?.split('/');
    let org = parts
        .next()
        .filter(|s| check_name("organisation", s).is_ok())?;
    let system = parts.next().filter(|s| check_name("system", s).is_ok())?;
    Some((org, system))
}

/// The topic of a source on this bus: `bus` + the source, which is a path
/// `/<organisation>/<system>[/...]` (None for any other source).
pub fn source_topic(source: &str) -> Option<String> {
    source_parts(source)?;
    let path = source.strip_prefix('/')?.trim_end_matches('/');
    let ok = path
        .split('/')
        .all(|s| !s.is_empty() && !s.contains(['+', '#']) && !s.chars().any(char::is_control));
    ok.then(|| format!("bus/{path}"))
}

/// The catalog: organisations, systems, endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    orgs: BTreeMap<String, Organisation>,
    systems: BTreeMap<(String, String), System>,
    endpoints: BTreeMap<(String, String, String), Endpoint>,
}

impl Catalog {
    /// Checks `org` (named `id`) for [`Self::put_organisation`].
    pub fn check_organisation(&self, id: &str, org: &mut Organisation) -> Result<(), CatalogError> {
        check_name("organisation", id).map_err(name_error)?;
        if !org.id.is_empty() && org.id != id {
            return Err(invalid(format!(
                "the body names organisation {:?}, the URL {id:?}",
                org.id
            )));
        }
        org.id = id.to_string();
        check_text("name", &org.name, true)?;
        if let Some(d) = &org.description {
            check_text("description", d, false)?;
        }
        if let Some(c) = &org.ipa_code {
            let ok = (2..=32).contains(&c.len())
                && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
            if !ok {
                return Err(invalid(format!("ipa_code {c:?} is not an IPA code")));
            }
        }
        check_contacts("organisation", &org.contacts)
    }

    /// Adds or replaces an organisation (checked first); true when it is new.
    pub fn put_organisation(&mut self, org: Organisation) -> bool {
        self.orgs.insert(org.id.clone(), org).is_none()
    }

    /// Checks that organisation `id` can go: it has no systems left.
    pub fn check_delete_organisation(&self, id: &str) -> Result<(), CatalogError> {
        self.organisation(id)?;
        let systems: Vec<&str> = self.systems_of(id).map(|s| s.id.as_str()).collect();
        if !systems.is_empty() {
            return Err(CatalogError::Conflict(format!(
                "organisation {id} still has systems: {}; delete them first",
                systems.join(", ")
            )));
        }
        Ok(())
    }

    /// Removes an organisation (checked first).
    pub fn delete_organisation(&mut self, id: &str) {
        self.orgs.remove(id);
    }

    /// Checks `system` (named `org`/`id`) for [`Self::put_system`].
    pub fn check_system(
        &self,
        org: &str,
        id: &str,
        system: &mut System,
    ) -> Result<(), CatalogError> {
        self.organisation(org)?;
        check_name("system", id).map_err(name_error)?;
        for (field, given, wanted) in [
            ("organisation", &system.org, org),
            ("system", &system.id, id),
        ] {
            if !given.is_empty() && given != wanted {
                return Err(invalid(format!(
                    "the body names {field} {given:?}, the URL {wanted:?}"
                )));
            }
        }
        system.org = org.to_string();
        system.id = id.to_string();
        check_text("name", &system.name, true)?;
        check_text("owner", &system.owner, true)?;
        if let Some(d) = &system.description {
            check_text("description", d, false)?;
        }
        check_contacts("system", &system.contacts)?;
        check_types("produces", &system.produces)?;
        check_types("consumes", &system.consumes)?;
        for list in [&mut system.produces, &mut system.consumes] {
            list.sort();
            list.dedup();
        }
        Ok(())
    }

    /// Adds or replaces a system (checked first); true when it is new.
    pub fn put_system(&mut self, system: System) -> bool {
        self.systems
            .insert((system.org.clone(), system.id.clone()), system)
            .is_none()
    }

    /// Removes a system and its endpoints.
    pub fn delete_system(&mut self, org: &str, id: &str) -> Result<(), CatalogError> {
        self.system(org, id)?;
        self.systems.remove(&(org.to_string(), id.to_string()));
        self.endpoints.retain(|(o, s, _), _| !(o == org && s == id));
        Ok(())
    }

    /// Reads `document` for endpoint `org`/`system`/`id` and builds the endpoint.
    pub fn check_endpoint(
        &self,
        org: &str,
        system: &str,
        id: &str,
        url: Option<String>,
        document: String,
        now_micros: i64,
    ) -> Result<Endpoint, CatalogError> {
        self.system(org, system)?;
        check_name("endpoint", id).map_err(name_error)?;
        if let Some(u) = &url {
            let parsed = url::Url::parse(u).map_err(|e| invalid(format!("url {u:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(invalid(format!("url {u:?}: use http or https")));
            }
        }
        let described = describe_document(&document)?;
        let sha256 = hex::encode(Sha256::digest(document.as_bytes()));
        Ok(Endpoint {
            org: org.to_string(),
            system: system.to_string(),
            id: id.to_string(),
            url: url.or_else(|| described.address.clone()),
            described,
            document,
            sha256,
            updated_micros: now_micros,
        })
    }

    /// Adds or replaces an endpoint (checked first); true when it is new.
    pub fn put_endpoint(&mut self, endpoint: Endpoint) -> bool {
        self.endpoints
            .insert(
                (
                    endpoint.org.clone(),
                    endpoint.system.clone(),
                    endpoint.id.clone(),
                ),
                endpoint,
            )
            .is_none()
    }

    /// Removes an endpoint.
    pub fn delete_endpoint(
        &mut self,
        org: &str,
        system: &str,
        id: &str,
    ) -> Result<(), CatalogError> {
        self.endpoint(org, system, id)?;
        self.endpoints
            .remove(&(org.to_string(), system.to_string(), id.to_string()));
        Ok(())
    }

    /// Every organisation, by id.
    pub fn organisations(&self) -> impl Iterator<Item = &Organisation> {
        self.orgs.values()
    }

    /// One organisation.
    pub fn organisation(&self, id: &str) -> Result<&Organisation, CatalogError> {
        self.orgs.get(id).ok_or_else(|| {
            CatalogError::NotFound(format!("there is no organisation {id} in the catalog"))
        })
    }

    /// Every system, by organisation and id.
    pub fn systems(&self) -> impl Iterator<Item = &System> {
        self.systems.values()
    }

    /// The systems of an organisation.
    pub fn systems_of<'a>(&'a self, org: &'a str) -> impl Iterator<Item = &'a System> + 'a {
        self.systems
            .range((org.to_string(), String::new())..)
            .take_while(move |((o, _), _)| o == org)
            .map(|(_, s)| s)
    }

    /// One system.
    pub fn system(&self, org: &str, id: &str) -> Result<&System, CatalogError> {
        self.organisation(org)?;
        self.systems
            .get(&(org.to_string(), id.to_string()))
            .ok_or_else(|| CatalogError::NotFound(format!("organisation {org} has no system {id}")))
    }

    /// The endpoints of a system.
    pub fn endpoints_of<'a>(
        &'a self,
        org: &'a str,
        system: &'a str,
    ) -> impl Iterator<Item = &'a Endpoint> + 'a {
        self.endpoints
            .range((org.to_string(), system.to_string(), String::new())..)
            .take_while(move |((o, s, _), _)| o == org && s == system)
            .map(|(_, e)| e)
    }

    /// One endpoint.
    pub fn endpoint(&self, org: &str, system: &str, id: &str) -> Result<&Endpoint, CatalogError> {
        self.system(org, system)?;
        self.endpoints
            .get(&(org.to_string(), system.to_string(), id.to_string()))
            .ok_or_else(|| {
                CatalogError::NotFound(format!("system {org}/{system} has no endpoint {id}"))
            })
    }

    /// Whether a system of `org` declares that it produces `event_type`.
    pub fn org_produces(&self, org: &str, event_type: &str) -> bool {
        self.systems_of(org)
            .any(|s| s.produces.iter().any(|t| t == event_type))
    }
}

// ---- endpoint documents ---------------------------------------------------------------------

/// Reads an endpoint document: OpenAPI 3.x or Swagger 2.0 in JSON or YAML, or WSDL 1.1 or 2.0.
pub fn describe_document(document: &str) -> Result<Described, CatalogError> {
    if document.len() > MAX_DOCUMENT {
        return Err(invalid(format!(
            "the document is {} bytes; at most {MAX_DOCUMENT}",
            document.len()
        )));
    }
    let text = document.trim_start_matches('\u{feff}').trim_start();
    if text.is_empty() {
        return Err(invalid(
            "the document is empty: send an OpenAPI (JSON or YAML) or WSDL document",
        ));
    }
    if text.starts_with('<') {
        return describe_wsdl(text);
    }
    let (value, format) = if text.starts_with('{') {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| invalid(format!("the document is not valid JSON: {e}")))?;
        (v, DocumentFormat::Json)
    } else {
        let v: Value = serde_norway::from_str(text).map_err(|e| {
            invalid(format!(
                "the document is neither JSON, YAML nor XML (YAML: {e})"
            ))
        })?;
        (v, DocumentFormat::Yaml)
    };
    describe_openapi(&value, format)
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn describe_openapi(doc: &Value, format: DocumentFormat) -> Result<Described, CatalogError> {
    let Value::Object(root) = doc else {
        let what = match doc {
            Value::Array(_) => "a list",
            Value::String(_) => "plain text",
            _ => "a single value",
        };
        return Err(invalid(format!(
            "the document is not an OpenAPI or WSDL document: it is {what}"
        )));
    };
    let standard = match (root.get("openapi"), root.get("swagger")) {
        (Some(Value::String(v)), _) if v.starts_with("3.") => format!("OpenAPI {v}"),
        (_, Some(Value::String(v))) if v == "2.0" => "Swagger 2.0".to_string(),
        (Some(v), _) => {
            return Err(invalid(format!(
                "openapi {v}: OpenAPI 3.x (or Swagger 2.0) documents are read"
            )));
        }
        _ => {
            return Err(invalid(
                "not an OpenAPI document: it has no \"openapi\" (3.x) or \"swagger\" (2.0) field",
            ));
        }
    };
    let info = root
        .get("info")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("the OpenAPI document has no info object"))?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let title =
        text(info.get("title")).ok_or_else(|| invalid("the OpenAPI document has no info.title"))?;
    let api_version = text(info.get("version"))
        .ok_or_else(|| invalid("the OpenAPI document has no info.version"))?;
    let address = if standard.starts_with("OpenAPI") {
        root.get("servers")
            .and_then(Value::as_array)
            .and_then(|s| s.first())
            .and_then(|s| text(s.get("url")))
    } else {
        text(root.get("host")).map(|host| {
            let scheme = root
                .get("schemes")
                .and_then(Value::as_array)
                .and_then(|s| s.first())
                .and_then(Value::as_str)
                .unwrap_or("https");
            let base = text(root.get("basePath")).unwrap_or_default();
            format!("{scheme}://{host}{base}")
        })
    };
    let mut operations = Vec::new();
    match root.get("paths") {
        Some(Value::Object(paths)) => {
            for (path, item) in paths {
                let Value::Object(item) = item else {
                    return Err(invalid(format!("paths.{path} is not an object")));
                };
                for method in METHODS {
                    let Some(op) = item.get(method) else {
                        continue;
                    };
                    let Value::Object(op) = op else {
                        return Err(invalid(format!("paths.{path}.{method} is not an object")));
                    };
                    let upper = method.to_ascii_uppercase();
                    operations.push(Operation {
                        name: text(op.get("operationId"))
                            .unwrap_or_else(|| format!("{upper} {path}")),
                        method: Some(upper),
                        path: Some(path.clone()),
                        soap_action: None,
                        input: None,
                        output: None,
                        summary: text(op.get("summary")).or_else(|| text(op.get("description"))),
                    });
                }
            }
        }
        None if standard.starts_with("OpenAPI 3.1") => {}
        None => return Err(invalid("the OpenAPI document has no paths object")),
        Some(_) => return Err(invalid("paths is not an object")),
    }
    Ok(Described {
        kind: EndpointKind::Openapi,
        format,
        standard,
        title: Some(title),
        api_version: Some(api_version),
        address,
        operations,
    })
}

/// The local part of a qualified name (`tns:GetMenu` → `GetMenu`).
fn local(qname: &str) -> &str {
    qname.rsplit_once(':').map_or(qname, |(_, l)| l)
}

fn attr(e: &BytesStart<'_>, name: &[u8]) -> Result<Option<String>, CatalogError> {
    for a in e.attributes() {
        let a = a.map_err(|err| invalid(format!("the WSDL is not well-formed XML: {err}")))?;
        if a.key.local_name().as_ref() == name {
            let v = a
                .unescape_value()
                .map_err(|err| invalid(format!("the WSDL is not well-formed XML: {err}")))?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

/// Reads a WSDL 1.1 (`definitions`) or 2.0 (`description`) document: the operations of its
/// port types (interfaces), their SOAP actions, the service's address.
fn describe_wsdl(text: &str) -> Result<Described, CatalogError> {
    let mut reader = quick_xml::NsReader::from_str(text);
    let config = reader.config_mut();
    config.trim_text(false);
    config.check_end_names = true;
    let bad = |e: &dyn std::fmt::Display| invalid(format!("the WSDL is not well-formed XML: {e}"));
    // (namespace is WSDL, local name) of the open elements.
    let mut stack: Vec<(bool, String)> = Vec::new();
    let mut version: Option<&str> = None;
    let mut title: Option<String> = None;
    let mut service_name: Option<String> = None;
    let mut address: Option<String> = None;
    let mut operations: Vec<Operation> = Vec::new();
    let mut soap_actions: BTreeMap<String, String> = BTreeMap::new();
    let mut binding_op: Option<String> = None;
    let mut in_documentation = false;
    let mut documentation = String::new();
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(|e| bad(&e))?;
        let is_wsdl = |ns: &ResolveResult<'_>, wanted: &[u8]| matches!(ns, ResolveResult::Bound(n) if n.as_ref() == wanted);
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if stack.is_empty() {
                    version = match name.as_str() {
                        "definitions" if is_wsdl(&ns, WSDL11) => Some("WSDL 1.1"),
                        "description" if is_wsdl(&ns, WSDL20) => Some("WSDL 2.0"),
                        _ => {
                            return Err(invalid(format!(
                                "not a WSDL document: the root element is {name}, not a WSDL 1.1 definitions or WSDL 2.0 description"
                            )));
                        }
                    };
                    title = attr(e, b"name")?;
                }
                let wsdl_ns = if version == Some("WSDL 2.0") {
                    WSDL20
                } else {
                    WSDL11
                };
                let in_wsdl = is_wsdl(&ns, wsdl_ns);
                let path: Vec<&str> = stack
                    .iter()
                    .filter(|(w, _)| *w)
                    .map(|(_, n)| n.as_str())
                    .collect();
                let parent = path.last().copied();
                let grand = path.len().checked_sub(2).map(|i| path[i]);
                match (in_wsdl, name.as_str(), parent, grand) {
                    (true, "operation", Some("portType" | "interface"), _) => {
                        operations.push(Operation {
                            name: attr(e, b"name")?.unwrap_or_default(),
                            method: None,
                            path: None,
                            soap_action: None,
                            input: None,
                            output: None,
                            summary: None,
                        });
                    }
                    (
                        true,
                        "input" | "output",
                        Some("operation"),
                        Some("portType" | "interface"),
                    ) => {
                        let msg = match attr(e, b"message")? {
                            Some(m) => Some(m),
                            None => attr(e, b"element")?,
                        }
                        .map(|m| local(&m).to_string());
                        if let Some(op) = operations.last_mut() {
                            if name == "input" {
                                op.input = msg;
                            } else {
                                op.output = msg;
                            }
                        }
                    }
                    (true, "documentation", Some("operation"), Some("portType" | "interface")) => {
                        in_documentation = !empty;
                        documentation.clear();
                    }
                    (true, "operation", Some("binding"), _) => {
                        binding_op = attr(e, b"name")?;
                    }
                    (false, "operation", Some("operation"), Some("binding")) => {
                        if let (Some(op), Some(action)) = (&binding_op, attr(e, b"soapAction")?) {
                            soap_actions.entry(op.clone()).or_insert(action);
                        }
                    }
                    (true, "service", _, _) if service_name.is_none() => {
                        service_name = attr(e, b"name")?;
                    }
                    (true, "endpoint", Some("service"), _) if address.is_none() => {
                        address = attr(e, b"address")?;
                    }
                    (false, "address", Some("port"), Some("service")) if address.is_none() => {
                        address = attr(e, b"location")?;
                    }
                    _ => {}
                }
                if !empty {
                    stack.push((in_wsdl, name));
                }
            }
            Event::Text(t) if in_documentation => {
                documentation.push_str(&t.decode().map_err(|e| bad(&e))?);
            }
            Event::CData(t) if in_documentation => {
                documentation.push_str(&t.decode().map_err(|e| bad(&e))?);
            }
            Event::GeneralRef(r) if in_documentation => {
                let c = match r.resolve_char_ref().map_err(|e| bad(&e))? {
                    Some(c) => c,
                    None => match &*r {
                        b"amp" => '&',
                        b"lt" => '<',
                        b"gt" => '>',
                        b"quot" => '"',
                        b"apos" => '\'',
                        other => {
                            return Err(invalid(format!(
                                "the WSDL uses an undeclared entity &{};",
                                String::from_utf8_lossy(other)
                            )));
                        }
                    },
                };
                documentation.push(c);
            }
            Event::End(_) => {
                if let Some((true, name)) = stack.pop() {
                    match name.as_str() {
                        "documentation" if in_documentation => {
                            in_documentation = false;
                            let doc = documentation
                                .split_whitespace()
                                .collect::<Vec<_>>()
                                .join(" ");
                            if let Some(op) = operations.last_mut()
                                && !doc.is_empty()
                            {
                                op.summary = Some(doc);
                            }
                        }
                        "operation" => binding_op = None,
                        _ => {}
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let Some(standard) = version else {
        return Err(invalid("the document has no root element"));
    };
    if !stack.is_empty() {
        return Err(invalid("the WSDL ends before its elements are closed"));
    }
    for op in &mut operations {
        if op.name.is_empty() {
            return Err(invalid("a WSDL operation has no name"));
        }
        op.soap_action = soap_actions.get(&op.name).cloned();
    }
    Ok(Described {
        kind: EndpointKind::Wsdl,
        format: DocumentFormat::Xml,
        standard: standard.to_string(),
        title: title.or(service_name),
        api_version: None,
        address,
        operations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const WSDL_11: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<definitions name="AnagrafeService" targetNamespace="urn:prato:anagrafe"
    xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:tns="urn:prato:anagrafe"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:xsd="http://www.w3.org/2001/XMLSchema">
  <message name="CercaResidenteRequest"><part name="codiceFiscale" type="xsd:string"/></message>
  <message name="CercaResidenteResponse"><part name="residente" type="xsd:string"/></message>
  <portType name="AnagrafePort">
    <operation name="CercaResidente">
      <documentation>Finds a resident
        by fiscal code &amp; returns the record.</documentation>
      <input message="tns:CercaResidenteRequest"/>
      <output message="tns:CercaResidenteResponse"/>
    </operation>
    <operation name="Ping"><input message="tns:PingRequest"/></operation>
  </portType>
  <binding name="AnagrafeBinding" type="tns:AnagrafePort">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <operation name="CercaResidente">
      <soap:operation soapAction="urn:prato:anagrafe:CercaResidente"/>
    </operation>
  </binding>
  <service name="Anagrafe">
    <port name="AnagrafeSoap" binding="tns:AnagrafeBinding">
      <soap:address location="https://anagrafe.example/soap"/>
    </port>
  </service>
</definitions>"#;

    #[test]
    fn a_wsdl_11_document_lists_its_operations() {
        let d = describe_document(WSDL_11).unwrap();
        assert_eq!(d.kind, EndpointKind::Wsdl);
        assert_eq!(d.standard, "WSDL 1.1");
        assert_eq!(d.title.as_deref(), Some("AnagrafeService"));
        assert_eq!(d.address.as_deref(), Some("https://anagrafe.example/soap"));
        assert_eq!(d.operations.len(), 2);
        let op = &d.operations[0];
        assert_eq!(op.name, "CercaResidente");
        assert_eq!(op.input.as_deref(), Some("CercaResidenteRequest"));
        assert_eq!(op.output.as_deref(), Some("CercaResidenteResponse"));
        assert_eq!(
            op.soap_action.as_deref(),
            Some("urn:prato:anagrafe:CercaResidente")
        );
        assert_eq!(
            op.summary.as_deref(),
            Some("Finds a resident by fiscal code & returns the record.")
        );
        assert_eq!(d.operations[1].soap_action, None);
        assert_eq!(d.operations[1].output, None);
    }

    #[test]
    fn a_wsdl_20_document_lists_its_interface() {
        let doc = r#"<description xmlns="http://www.w3.org/ns/wsdl" xmlns:tns="urn:x" targetNamespace="urn:x">
          <interface name="Menu"><operation name="GetMenu" pattern="http://www.w3.org/ns/wsdl/in-out">
            <input element="tns:MenuRequest"/><output element="tns:Menu"/></operation></interface>
          <service name="MenuService" interface="tns:Menu">
            <endpoint name="e" binding="tns:b" address="http://127.0.0.1:9/menu"/></service>
        </description>"#;
        let d = describe_document(doc).unwrap();
        assert_eq!(d.standard, "WSDL 2.0");
        assert_eq!(d.title.as_deref(), Some("MenuService"));
        assert_eq!(d.address.as_deref(), Some("http://127.0.0.1:9/menu"));
        assert_eq!(d.operations[0].name, "GetMenu");
        assert_eq!(d.operations[0].input.as_deref(), Some("MenuRequest"));
    }

    #[test]
    fn broken_or_foreign_xml_is_refused_with_a_reason() {
        let e = describe_document("<html><body/></html>").unwrap_err();
        assert!(e.to_string().contains("root element is html"), "{e}");
        let e = describe_document(r#"<definitions xmlns="urn:other"/>"#).unwrap_err();
        assert!(e.to_string().contains("not a WSDL document"), "{e}");
        let e = describe_document(
            r#"<definitions xmlns="http://schemas.xmlsoap.org/wsdl/"><portType></definitions>"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not well-formed"), "{e}");
        let e = describe_document(r#"<definitions xmlns="http://schemas.xmlsoap.org/wsdl/">"#)
            .unwrap_err();
        assert!(
            e.to_string().contains("before its elements are closed"),
            "{e}"
        );
    }

    #[test]
    fn openapi_in_yaml_and_json() {
        let yaml = "openapi: 3.0.3\ninfo:\n  title: Mensa\n  version: '1.2'\nservers:\n  - url: https://mensa.example/api\npaths:\n  /menu/{day}:\n    get:\n      operationId: getMenu\n      summary: The menu of a day\n    post:\n      description: Replace it\n";
        let d = describe_document(yaml).unwrap();
        assert_eq!(d.format, DocumentFormat::Yaml);
        assert_eq!(d.standard, "OpenAPI 3.0.3");
        assert_eq!(
            (d.title.as_deref(), d.api_version.as_deref()),
            (Some("Mensa"), Some("1.2"))
        );
        assert_eq!(d.address.as_deref(), Some("https://mensa.example/api"));
        assert_eq!(d.operations.len(), 2);
        assert_eq!(d.operations[0].name, "getMenu");
        assert_eq!(d.operations[1].name, "POST /menu/{day}");
        assert_eq!(d.operations[1].summary.as_deref(), Some("Replace it"));
        let swagger = json!({"swagger": "2.0", "info": {"title": "T", "version": "1"},
            "host": "old.example", "basePath": "/v1", "schemes": ["http"], "paths": {"/x": {"delete": {}}}});
        let d = describe_document(&swagger.to_string()).unwrap();
        assert_eq!(d.format, DocumentFormat::Json);
        assert_eq!(d.address.as_deref(), Some("http://old.example/v1"));
        assert_eq!(d.operations[0].name, "DELETE /x");
    }

    #[test]
    fn documents_that_are_not_api_descriptions_are_refused() {
        for (doc, expected) in [
            ("", "empty"),
            ("{\"openapi\": 3", "not valid JSON"),
            ("{\"title\": \"x\"}", "no \"openapi\""),
            ("{\"openapi\": \"2.5\", \"info\": {}}", "OpenAPI 3.x"),
            ("{\"openapi\": \"3.0.0\", \"paths\": {}}", "no info"),
            (
                "{\"openapi\": \"3.0.0\", \"info\": {\"title\": \"t\"}, \"paths\": {}}",
                "info.version",
            ),
            (
                "{\"openapi\": \"3.0.0\", \"info\": {\"title\": \"t\", \"version\": \"1\"}}",
                "no paths",
            ),
            ("a: [b", "neither JSON, YAML nor XML"),
            ("hello", "not an OpenAPI or WSDL document: it is plain text"),
        ] {
            let e = describe_document(doc).unwrap_err();
            assert!(e.to_string().contains(expected), "{doc:?}: {e}");
        }
    }

    fn org(id: &str) -> Organisation {
        Organisation {
            id: String::new(),
            name: format!("Org {id}"),
            kind: OrgKind::Operator,
            ipa_code: None,
            description: None,
            contacts: vec![Contact {
                name: "Desk".into(),
                role: None,
                email: Some("desk@example.org".into()),
                phone: None,
            }],
        }
    }

    fn system(produces: &[&str]) -> System {
        System {
            org: String::new(),
            id: String::new(),
            name: "Menu".into(),
            owner: "Ufficio scuola".into(),
            description: None,
            contacts: vec![],
            produces: produces.iter().map(|s| s.to_string()).collect(),
            consumes: vec![],
        }
    }

    #[test]
    fn the_catalog_checks_names_contacts_and_types() {
        let mut c = Catalog::default();
        let mut o = org("mensa");
        c.check_organisation("mensa", &mut o).unwrap();
        assert_eq!(o.id, "mensa");
        assert!(c.put_organisation(o.clone()));
        assert!(!c.put_organisation(o));
        let mut bad = org("x");
        bad.contacts[0].email = Some("nobody".into());
        let e = c.check_organisation("x", &mut bad).unwrap_err();
        assert!(e.to_string().contains("not an e-mail address"), "{e}");
        bad.contacts[0].email = None;
        let e = c.check_organisation("x", &mut bad).unwrap_err();
        assert!(e.to_string().contains("give an email or a phone"), "{e}");
        let e = c.check_organisation("a b", &mut org("a")).unwrap_err();
        assert!(e.to_string().contains("organisation name"), "{e}");

        let mut s = system(&[
            "it.prato.school.menu.Published",
            "it.prato.school.menu.Published",
        ]);
        let e = c.check_system("nobody", "menu", &mut s).unwrap_err();
        assert_eq!(e.http_status(), 404);
        c.check_system("mensa", "menu", &mut s).unwrap();
        assert_eq!(s.produces.len(), 1, "deduplicated");
        assert_eq!(s.source(), "/mensa/menu");
        c.put_system(s);
        let mut s = system(&["not a type"]);
        assert!(c.check_system("mensa", "m2", &mut s).is_err());
        assert!(c.org_produces("mensa", "it.prato.school.menu.Published"));
        assert!(!c.org_produces("mensa", "it.prato.other"));

        let e = c.check_delete_organisation("mensa").unwrap_err();
        assert_eq!(e.http_status(), 409);
        assert!(e.to_string().contains("menu"), "{e}");

        let ep = c
            .check_endpoint("mensa", "menu", "soap", None, WSDL_11.into(), 7)
            .unwrap();
        assert_eq!(ep.url.as_deref(), Some("https://anagrafe.example/soap"));
        assert_eq!(ep.sha256.len(), 64);
        assert!(c.put_endpoint(ep));
        assert_eq!(c.endpoints_of("mensa", "menu").count(), 1);
        let e = c
            .check_endpoint(
                "mensa",
                "menu",
                "x",
                Some("ftp://a".into()),
                WSDL_11.into(),
                7,
            )
            .unwrap_err();
        assert!(e.to_string().contains("use http or https"), "{e}");
        c.delete_system("mensa", "menu").unwrap();
        assert_eq!(c.endpoints_of("mensa", "menu").count(), 0);
        c.check_delete_organisation("mensa").unwrap();
    }

    #[test]
    fn sources_name_an_organisation_and_a_system() {
        assert_eq!(source_parts("/acme/billing/x"), Some(("acme", "billing")));
        assert_eq!(source_parts("/acme"), None);
        assert_eq!(source_parts("acme/billing"), None);
        assert_eq!(
            source_topic("/acme/billing").as_deref(),
            Some("bus/acme/billing")
        );
        assert_eq!(
            source_topic("/acme/billing/a/").as_deref(),
            Some("bus/acme/billing/a")
        );
        assert_eq!(source_topic("https://acme.example/x"), None);
        assert_eq!(source_topic("/a//b"), None);
        assert_eq!(source_topic("/a/b/#"), None);
        assert_eq!(source_topic("/"), None);
    }
}
