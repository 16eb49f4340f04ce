//! Who may connect, publish and subscribe.

use std::fmt;

/// Decides who may connect to the embedded broker and which topics each client may publish
/// to and subscribe to. Called on the connection's task: keep it fast (no I/O).
pub trait BrokerAuth: Send + Sync + fmt::Debug {
    /// Checks a CONNECT's credentials. `client_id` is the client identifier in use (the one
    /// the broker assigned if the client sent none); `password` is `None` when absent or empty.
    fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<ClientIdentity, ConnectRefusal>;
    /// Whether `client` may publish to `topic` (a valid topic name).
    fn may_publish(&self, client: &ClientIdentity, topic: &str) -> bool;
    /// Whether `client` may subscribe to `filter` (a valid topic filter, maybe with wildcards).
    fn may_subscribe(&self, client: &ClientIdentity, filter: &str) -> bool;
}

/// An authenticated client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The principal (e.g. the API token's id), copied into `InboundMessage::publisher` of
    /// everything the client publishes; `None` for anonymous clients.
    pub principal: Option<String>,
    /// How the client is named in logs.
    pub label: String,
}

/// Why a CONNECT is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectRefusal {
    /// Unknown user or wrong password (CONNACK 0x04 in MQTT 3.1.1, 0x86 in MQTT 5).
    BadCredentials,
    /// Valid credentials that may not use the broker (CONNACK 0x05 in 3.1.1, 0x87 in 5).
    NotAuthorized,
}

/// Lets anyone connect, publish and subscribe (tests, and servers run with
/// authentication switched off). The identity has no principal; its label is the client id.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl BrokerAuth for AllowAll {
    fn authenticate(
        &self,
        client_id: &str,
        _username: Option<&str>,
        _password: Option<&[u8]>,
    ) -> Result<ClientIdentity, ConnectRefusal> {
        Ok(ClientIdentity {
            principal: None,
            label: client_id.to_string(),
        })
    }

    fn may_publish(&self, _client: &ClientIdentity, _topic: &str) -> bool {
        true
    }

    fn may_subscribe(&self, _client: &ClientIdentity, _filter: &str) -> bool {
        true
    }
}
