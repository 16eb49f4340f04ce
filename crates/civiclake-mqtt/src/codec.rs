//! A protocol-neutral view of the MQTT packets the broker handles, over rumqttc's MQTT 3.1.1
//! (`rumqttc::mqttbytes::v4`) and MQTT 5 (`rumqttc::v5::mqttbytes::v5`) codecs, so the
//! connection logic is written once.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rumqttc::mqttbytes as m4;
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes as m5;
use rumqttc::v5::mqttbytes::v5;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The MQTT version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// MQTT 3.1.1 (protocol level 4).
    V4,
    /// MQTT 5 (protocol level 5).
    V5,
}

/// Properties of an MQTT 5 message that travel with it to MQTT 5 subscribers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MessageProps {
    pub(crate) payload_format_indicator: Option<u8>,
    pub(crate) message_expiry_interval: Option<u32>,
    pub(crate) response_topic: Option<String>,
    pub(crate) correlation_data: Option<Bytes>,
    pub(crate) content_type: Option<String>,
    pub(crate) user_properties: Vec<(String, String)>,
}

impl MessageProps {
    fn is_empty(&self) -> bool {
        *self == MessageProps::default()
    }

    fn to_v5(&self) -> Option<v5::PublishProperties> {
        if self.is_empty() {
            return None;
        }
        Some(v5::PublishProperties {
            payload_format_indicator: self.payload_format_indicator,
            message_expiry_interval: self.message_expiry_interval,
            topic_alias: None,
            response_topic: self.response_topic.clone(),
            correlation_data: self.correlation_data.clone(),
            user_properties: self.user_properties.clone(),
            subscription_identifiers: Vec::new(),
            content_type: self.content_type.clone(),
        })
    }
}

/// A will message from a CONNECT.
#[derive(Debug, Clone)]
pub(crate) struct Will {
    pub(crate) topic: String,
    pub(crate) payload: Bytes,
    pub(crate) qos: u8,
    pub(crate) retain: bool,
    pub(crate) props: MessageProps,
}

/// A CONNECT.
#[derive(Debug, Clone)]
pub(crate) struct ConnectInfo {
    pub(crate) keep_alive: u16,
    pub(crate) client_id: String,
    pub(crate) clean_start: bool,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<Vec<u8>>,
    pub(crate) will: Option<Will>,
    /// MQTT 5 Receive Maximum: how many QoS 1 messages the client accepts unacknowledged.
    pub(crate) receive_maximum: Option<u16>,
    /// MQTT 5 Maximum Packet Size the client accepts.
    pub(crate) max_packet_size: Option<u32>,
}

/// A PUBLISH from a client.
#[derive(Debug, Clone)]
pub(crate) struct InPublish {
    pub(crate) topic: String,
    pub(crate) payload: Bytes,
    pub(crate) qos: u8,
    pub(crate) retain: bool,
    pub(crate) pkid: u16,
    pub(crate) props: MessageProps,
    /// MQTT 5 Topic Alias (the broker allows none).
    pub(crate) topic_alias: Option<u16>,
}

/// One filter of a SUBSCRIBE.
#[derive(Debug, Clone)]
pub(crate) struct SubFilter {
    pub(crate) filter: String,
    pub(crate) qos: u8,
    /// MQTT 5 Retain Handling: 0 send retained messages, 1 only for a new subscription, 2 never.
    pub(crate) retain_handling: u8,
}

/// A packet from a client.
#[derive(Debug, Clone)]
pub(crate) enum Inbound {
    Connect(Box<ConnectInfo>),
    Publish(InPublish),
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Subscribe {
        pkid: u16,
        filters: Vec<SubFilter>,
        /// MQTT 5 Subscription Identifier present (the broker does not support them).
        with_subscription_id: bool,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    PingReq,
    Disconnect {
        /// MQTT 5 reason 0x04: publish the will anyway.
        with_will: bool,
    },
    /// A packet only a server sends, or MQTT 5 AUTH: a protocol error.
    Unexpected(&'static str),
}

/// Why bytes from a client could not be read as a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// The remaining length is above the broker's maximum.
    TooLarge(usize),
    /// Not a well-formed packet.
    Malformed(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooLarge(n) => write!(f, "packet of {n} bytes is over the maximum"),
            DecodeError::Malformed(m) => write!(f, "malformed packet: {m}"),
        }
    }
}

/// The first packet of a connection, looked at before choosing a codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sniff {
    /// More bytes are needed.
    Incomplete,
    /// The first packet is not a CONNECT, or not one with protocol name MQTT/MQIsdp.
    NotConnect,
    /// The CONNECT is larger than the maximum packet size.
    TooLarge,
    /// A complete CONNECT with this protocol level.
    Level(u8),
}

/// Reads a fixed header: `Ok(Some((header length, remaining length)))`, `Ok(None)` when more
/// bytes are needed, `Err` for a remaining length longer than four bytes.
fn fixed_header(buf: &[u8]) -> Result<Option<(usize, usize)>, ()> {
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((2 + i, remaining)));
        }
    }
    Err(())
}

/// Looks at the first packet of a connection: is it a complete CONNECT, and of which level.
pub(crate) fn sniff_connect(buf: &[u8], max_packet_bytes: usize) -> Sniff {
    let Some(&first) = buf.first() else {
        return Sniff::Incomplete;
    };
    if first != 0x10 {
        return Sniff::NotConnect;
    }
    let (header_len, remaining) = match fixed_header(buf) {
        Ok(Some(h)) => h,
        Ok(None) => return Sniff::Incomplete,
        Err(()) => return Sniff::NotConnect,
    };
    if remaining > max_packet_bytes {
        return Sniff::TooLarge;
    }
    if buf.len() < header_len + remaining {
        return Sniff::Incomplete;
    }
    let body = &buf[header_len..header_len + remaining];
    if body.len() < 2 {
        return Sniff::NotConnect;
    }
    let name_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let Some(name) = body.get(2..2 + name_len) else {
        return Sniff::NotConnect;
    };
    if name != b"MQTT" && name != b"MQIsdp" {
        return Sniff::NotConnect;
    }
    match body.get(2 + name_len) {
        Some(&level) => Sniff::Level(level),
        None => Sniff::NotConnect,
    }
}

/// The CONNACK "unacceptable protocol version" in the MQTT 3.1/3.1.1 format, understood by
/// clients of every version.
pub(crate) const CONNACK_BAD_PROTOCOL: [u8; 4] = [0x20, 0x02, 0x00, 0x01];

/// Reads the next packet from `buf`; `Ok(None)` when more bytes are needed.
pub(crate) fn decode(
    protocol: Protocol,
    buf: &mut BytesMut,
    max_packet_bytes: usize,
) -> Result<Option<Inbound>, DecodeError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    // A decoding bug must not take the process down: anything that panics is malformed.
    let decoded = catch_unwind(AssertUnwindSafe(|| match protocol {
        Protocol::V4 => decode_v4(buf, max_packet_bytes),
        Protocol::V5 => decode_v5(buf, max_packet_bytes),
    }));
    decoded.unwrap_or_else(|_| Err(DecodeError::Malformed("undecodable packet".to_string())))
}

fn decode_v4(buf: &mut BytesMut, max: usize) -> Result<Option<Inbound>, DecodeError> {
    let packet = match v4::Packet::read(buf, max) {
        Ok(p) => p,
        Err(m4::Error::InsufficientBytes(_)) => return Ok(None),
        Err(m4::Error::PayloadSizeLimitExceeded(n)) => return Err(DecodeError::TooLarge(n)),
        Err(e) => return Err(DecodeError::Malformed(e.to_string())),
    };
    let inbound = match packet {
        v4::Packet::Connect(c) => Inbound::Connect(Box::new(ConnectInfo {
            keep_alive: c.keep_alive,
            client_id: c.client_id,
            clean_start: c.clean_session,
            username: c
                .login
                .as_ref()
                .map(|l| l.username.clone())
                .filter(|u| !u.is_empty()),
            password: c
                .login
                .map(|l| l.password.into_bytes())
                .filter(|p| !p.is_empty()),
            will: c.last_will.map(|w| Will {
                topic: w.topic,
                payload: w.message,
                qos: w.qos as u8,
                retain: w.retain,
                props: MessageProps::default(),
            }),
            receive_maximum: None,
            max_packet_size: None,
        })),
        v4::Packet::Publish(p) => Inbound::Publish(InPublish {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos as u8,
            retain: p.retain,
            pkid: p.pkid,
            props: MessageProps::default(),
            topic_alias: None,
        }),
        v4::Packet::PubAck(a) => Inbound::PubAck(a.pkid),
        v4::Packet::PubRec(a) => Inbound::PubRec(a.pkid),
        v4::Packet::PubRel(a) => Inbound::PubRel(a.pkid),
        v4::Packet::PubComp(a) => Inbound::PubComp(a.pkid),
        v4::Packet::Subscribe(s) => Inbound::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| SubFilter {
                    filter: f.path,
                    qos: f.qos as u8,
                    retain_handling: 0,
                })
                .collect(),
            with_subscription_id: false,
        },
        v4::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
            pkid: u.pkid,
            filters: u.topics,
        },
        v4::Packet::PingReq => Inbound::PingReq,
        v4::Packet::Disconnect => Inbound::Disconnect { with_will: false },
        v4::Packet::ConnAck(_) => Inbound::Unexpected("CONNACK"),
        v4::Packet::SubAck(_) => Inbound::Unexpected("SUBACK"),
        v4::Packet::UnsubAck(_) => Inbound::Unexpected("UNSUBACK"),
        v4::Packet::PingResp => Inbound::Unexpected("PINGRESP"),
    };
    Ok(Some(inbound))
}

fn utf8(bytes: Bytes, what: &str) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| DecodeError::Malformed(format!("{what} is not UTF-8")))
}

fn decode_v5(buf: &mut BytesMut, max: usize) -> Result<Option<Inbound>, DecodeError> {
    // rumqttc's reader refuses a DISCONNECT with remaining length 0 (reason 0x00, normal
    // disconnection) and one with remaining length 1 (a reason code without a property
    // length); MQTT 5 allows both (§3.14.2.1, §3.14.2.2.1).
    if buf[0] == 0xE0 && buf[1] == 0x00 {
        buf.advance(2);
        return Ok(Some(Inbound::Disconnect { with_will: false }));
    }
    if buf[0] == 0xE0 && buf[1] == 0x01 {
        let Some(&reason) = buf.get(2) else {
            return Ok(None);
        };
        buf.advance(3);
        return Ok(Some(Inbound::Disconnect {
            with_will: reason == 0x04,
        }));
    }
    let max_u32 = u32::try_from(max).unwrap_or(u32::MAX);
    let packet = match v5::Packet::read(buf, Some(max_u32)) {
        Ok(p) => p,
        Err(m5::Error::InsufficientBytes(_)) => return Ok(None),
        Err(m5::Error::PayloadSizeLimitExceeded { pkt_size, .. }) => {
            return Err(DecodeError::TooLarge(pkt_size));
        }
        Err(e) => return Err(DecodeError::Malformed(e.to_string())),
    };
    let inbound = match packet {
        v5::Packet::Connect(c, will, login) => {
            let will = match will {
                Some(w) => {
                    let props = w
                        .properties
                        .map(|p| MessageProps {
                            payload_format_indicator: p.payload_format_indicator,
                            message_expiry_interval: p.message_expiry_interval,
                            response_topic: p.response_topic,
                            correlation_data: p.correlation_data,
                            content_type: p.content_type,
                            user_properties: p.user_properties,
                        })
                        .unwrap_or_default();
                    Some(Will {
                        topic: utf8(w.topic, "the will topic")?,
                        payload: w.message,
                        qos: w.qos as u8,
                        retain: w.retain,
                        props,
                    })
                }
                None => None,
            };
            let props = c.properties.as_ref();
            Inbound::Connect(Box::new(ConnectInfo {
                keep_alive: c.keep_alive,
                client_id: c.client_id,
                clean_start: c.clean_start,
                username: login
                    .as_ref()
                    .map(|l| l.username.clone())
                    .filter(|u| !u.is_empty()),
                password: login
                    .map(|l| l.password.into_bytes())
                    .filter(|p| !p.is_empty()),
                will,
                receive_maximum: props.and_then(|p| p.receive_maximum),
                max_packet_size: props.and_then(|p| p.max_packet_size),
            }))
        }
        v5::Packet::Publish(p) => {
            let (props, topic_alias) = match p.properties {
                Some(pp) => (
                    MessageProps {
                        payload_format_indicator: pp.payload_format_indicator,
                        message_expiry_interval: pp.message_expiry_interval,
                        response_topic: pp.response_topic,
                        correlation_data: pp.correlation_data,
                        content_type: pp.content_type,
                        user_properties: pp.user_properties,
                    },
                    pp.topic_alias,
                ),
                None => (MessageProps::default(), None),
            };
            Inbound::Publish(InPublish {
                topic: utf8(p.topic, "the topic")?,
                payload: p.payload,
                qos: p.qos as u8,
                retain: p.retain,
                pkid: p.pkid,
                props,
                topic_alias,
            })
        }
        v5::Packet::PubAck(a) => Inbound::PubAck(a.pkid),
        v5::Packet::PubRec(a) => Inbound::PubRec(a.pkid),
        v5::Packet::PubRel(a) => Inbound::PubRel(a.pkid),
        v5::Packet::PubComp(a) => Inbound::PubComp(a.pkid),
        v5::Packet::Subscribe(s) => Inbound::Subscribe {
            pkid: s.pkid,
            with_subscription_id: s.properties.is_some_and(|p| p.id.is_some()),
            filters: s
                .filters
                .into_iter()
                .map(|f| SubFilter {
                    filter: f.path,
                    qos: f.qos as u8,
                    retain_handling: match f.retain_forward_rule {
                        v5::RetainForwardRule::OnEverySubscribe => 0,
                        v5::RetainForwardRule::OnNewSubscribe => 1,
                        v5::RetainForwardRule::Never => 2,
                    },
                })
                .collect(),
        },
        v5::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
            pkid: u.pkid,
            filters: u.filters,
        },
        v5::Packet::PingReq(_) => Inbound::PingReq,
        v5::Packet::Disconnect(d) => Inbound::Disconnect {
            with_will: d.reason_code == v5::DisconnectReasonCode::DisconnectWithWillMessage,
        },
        v5::Packet::ConnAck(_) => Inbound::Unexpected("CONNACK"),
        v5::Packet::SubAck(_) => Inbound::Unexpected("SUBACK"),
        v5::Packet::UnsubAck(_) => Inbound::Unexpected("UNSUBACK"),
        v5::Packet::PingResp(_) => Inbound::Unexpected("PINGRESP"),
        v5::Packet::Auth(_) => Inbound::Unexpected("AUTH"),
    };
    Ok(Some(inbound))
}

/// The outcome of a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnCode {
    Accepted,
    /// 3.1.1 0x02 / 5 0x85.
    BadClientId,
    /// 3.1.1 0x04 / 5 0x86.
    BadCredentials,
    /// 3.1.1 0x05 / 5 0x87.
    NotAuthorized,
    /// 5 only, 0x90: the will topic is not a valid topic name.
    TopicNameInvalid,
    /// 5 only, 0x9B: the will asks for QoS 2.
    QosNotSupported,
}

/// A CONNACK.
#[derive(Debug, Clone)]
pub(crate) struct ConnAckOut {
    pub(crate) code: ConnCode,
    pub(crate) assigned_client_id: Option<String>,
    pub(crate) receive_maximum: u16,
    pub(crate) max_packet_size: u32,
}

/// A SUBACK return code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubCode {
    Granted(u8),
    NotAuthorized,
    SharedNotSupported,
    SubscriptionIdNotSupported,
}

/// A packet to a client, other than PUBLISH and DISCONNECT.
#[derive(Debug, Clone)]
pub(crate) enum Outbound {
    ConnAck(ConnAckOut),
    PubAck { pkid: u16, not_authorized: bool },
    PubRec { pkid: u16 },
    PubComp { pkid: u16, found: bool },
    SubAck { pkid: u16, codes: Vec<SubCode> },
    UnsubAck { pkid: u16, found: Vec<bool> },
    PingResp,
}

fn qos4(qos: u8) -> m4::QoS {
    match qos {
        0 => m4::QoS::AtMostOnce,
        1 => m4::QoS::AtLeastOnce,
        _ => m4::QoS::ExactlyOnce,
    }
}

fn qos5(qos: u8) -> m5::QoS {
    match qos {
        0 => m5::QoS::AtMostOnce,
        1 => m5::QoS::AtLeastOnce,
        _ => m5::QoS::ExactlyOnce,
    }
}

/// Appends `packet` to `buf`.
pub(crate) fn encode(
    protocol: Protocol,
    packet: &Outbound,
    buf: &mut BytesMut,
) -> Result<(), String> {
    let written = match protocol {
        Protocol::V4 => encode_v4(packet, buf).map_err(|e| e.to_string()),
        Protocol::V5 => encode_v5(packet, buf).map_err(|e| e.to_string()),
    };
    written.map(|_| ())
}

fn encode_v4(packet: &Outbound, buf: &mut BytesMut) -> Result<usize, m4::Error> {
    match packet {
        Outbound::ConnAck(c) => {
            let code = match c.code {
                ConnCode::Accepted => v4::ConnectReturnCode::Success,
                ConnCode::BadClientId => v4::ConnectReturnCode::BadClientId,
                ConnCode::BadCredentials => v4::ConnectReturnCode::BadUserNamePassword,
                ConnCode::NotAuthorized => v4::ConnectReturnCode::NotAuthorized,
                // MQTT 3.1.1 has no codes for these; the broker closes such connections
                // without a CONNACK, this mapping is only a fallback.
                ConnCode::TopicNameInvalid | ConnCode::QosNotSupported => {
                    v4::ConnectReturnCode::ServiceUnavailable
                }
            };
            v4::ConnAck::new(code, false).write(buf)
        }
        Outbound::PubAck { pkid, .. } => v4::PubAck::new(*pkid).write(buf),
        Outbound::PubRec { pkid } => v4::PubRec::new(*pkid).write(buf),
        Outbound::PubComp { pkid, .. } => v4::PubComp::new(*pkid).write(buf),
        Outbound::SubAck { pkid, codes } => {
            let codes = codes
                .iter()
                .map(|c| match c {
                    SubCode::Granted(q) => v4::SubscribeReasonCode::Success(qos4(*q)),
                    _ => v4::SubscribeReasonCode::Failure,
                })
                .collect();
            v4::SubAck::new(*pkid, codes).write(buf)
        }
        Outbound::UnsubAck { pkid, .. } => v4::UnsubAck::new(*pkid).write(buf),
        Outbound::PingResp => v4::PingResp.write(buf),
    }
}

fn encode_v5(packet: &Outbound, buf: &mut BytesMut) -> Result<usize, m5::Error> {
    match packet {
        Outbound::ConnAck(c) => {
            let code = match c.code {
                ConnCode::Accepted => v5::ConnectReturnCode::Success,
                ConnCode::BadClientId => v5::ConnectReturnCode::ClientIdentifierNotValid,
                ConnCode::BadCredentials => v5::ConnectReturnCode::BadUserNamePassword,
                ConnCode::NotAuthorized => v5::ConnectReturnCode::NotAuthorized,
                ConnCode::TopicNameInvalid => v5::ConnectReturnCode::TopicNameInvalid,
                ConnCode::QosNotSupported => v5::ConnectReturnCode::QoSNotSupported,
            };
            let properties = (c.code == ConnCode::Accepted).then(|| v5::ConnAckProperties {
                session_expiry_interval: Some(0),
                receive_max: Some(c.receive_maximum),
                max_qos: Some(1),
                retain_available: None,
                max_packet_size: Some(c.max_packet_size),
                assigned_client_identifier: c.assigned_client_id.clone(),
                topic_alias_max: None,
                reason_string: None,
                user_properties: Vec::new(),
                wildcard_subscription_available: None,
                subscription_identifiers_available: Some(0),
                shared_subscription_available: Some(0),
                server_keep_alive: None,
                response_information: None,
                server_reference: None,
                authentication_method: None,
                authentication_data: None,
            });
            v5::ConnAck {
                session_present: false,
                code,
                properties,
            }
            .write(buf)
        }
        Outbound::PubAck {
            pkid,
            not_authorized,
        } => {
            let mut ack = v5::PubAck::new(*pkid, None);
            if *not_authorized {
                ack.reason = v5::PubAckReason::NotAuthorized;
            }
            ack.write(buf)
        }
        Outbound::PubRec { pkid } => v5::PubRec::new(*pkid, None).write(buf),
        Outbound::PubComp { pkid, found } => {
            let mut comp = v5::PubComp::new(*pkid, None);
            if !found {
                comp.reason = v5::PubCompReason::PacketIdentifierNotFound;
            }
            comp.write(buf)
        }
        Outbound::SubAck { pkid, codes } => {
            let return_codes = codes
                .iter()
                .map(|c| match c {
                    SubCode::Granted(q) => v5::SubscribeReasonCode::Success(qos5(*q)),
                    SubCode::NotAuthorized => v5::SubscribeReasonCode::NotAuthorized,
                    SubCode::SharedNotSupported => {
                        v5::SubscribeReasonCode::SharedSubscriptionsNotSupported
                    }
                    SubCode::SubscriptionIdNotSupported => {
                        v5::SubscribeReasonCode::SubscriptionIdNotSupported
                    }
                })
                .collect();
            v5::SubAck {
                pkid: *pkid,
                return_codes,
                properties: None,
            }
            .write(buf)
        }
        Outbound::UnsubAck { pkid, found } => v5::UnsubAck {
            pkid: *pkid,
            reasons: found
                .iter()
                .map(|f| {
                    if *f {
                        v5::UnsubAckReason::Success
                    } else {
                        v5::UnsubAckReason::NoSubscriptionExisted
                    }
                })
                .collect(),
            properties: None,
        }
        .write(buf),
        Outbound::PingResp => v5::PingResp::write(buf),
    }
}

/// Appends an MQTT 5 DISCONNECT with `reason` (and an empty property list, which rumqttc's
/// client needs to parse it).
pub(crate) fn encode_disconnect_v5(reason: u8, buf: &mut BytesMut) {
    buf.put_slice(&[0xE0, 0x02, reason, 0x00]);
}

/// A PUBLISH to a subscriber.
#[derive(Debug)]
pub(crate) struct OutPublish<'a> {
    pub(crate) topic: &'a str,
    pub(crate) payload: &'a Bytes,
    pub(crate) props: &'a MessageProps,
    pub(crate) qos: u8,
    pub(crate) retain: bool,
    pub(crate) pkid: u16,
}

/// Appends a PUBLISH to `buf`.
pub(crate) fn encode_publish(
    protocol: Protocol,
    p: &OutPublish<'_>,
    buf: &mut BytesMut,
) -> Result<(), String> {
    match protocol {
        Protocol::V4 => v4::Publish {
            dup: false,
            qos: qos4(p.qos),
            retain: p.retain,
            topic: p.topic.to_string(),
            pkid: p.pkid,
            payload: p.payload.clone(),
        }
        .write(buf)
        .map(|_| ())
        .map_err(|e| e.to_string()),
        Protocol::V5 => v5::Publish {
            dup: false,
            qos: qos5(p.qos),
            retain: p.retain,
            topic: Bytes::copy_from_slice(p.topic.as_bytes()),
            pkid: p.pkid,
            payload: p.payload.clone(),
            properties: p.props.to_v5(),
        }
        .write(buf)
        .map(|_| ())
        .map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_levels_and_garbage() {
        let connect = |level: u8| {
            let mut b = vec![0x10, 10, 0, 4, b'M', b'Q', b'T', b'T', level, 2, 0, 60];
            b.extend_from_slice(&[0, 0]);
            b[1] = (b.len() - 2) as u8;
            b
        };
        assert_eq!(sniff_connect(&connect(4), 1024), Sniff::Level(4));
        assert_eq!(sniff_connect(&connect(5), 1024), Sniff::Level(5));
        assert_eq!(sniff_connect(&connect(3), 1024), Sniff::Level(3));
        assert_eq!(sniff_connect(&connect(4)[..5], 1024), Sniff::Incomplete);
        assert_eq!(sniff_connect(&[0x10], 1024), Sniff::Incomplete);
        assert_eq!(
            sniff_connect(b"GET / HTTP/1.1\r\n", 1024),
            Sniff::NotConnect
        );
        assert_eq!(
            sniff_connect(&[0x10, 0xff, 0xff, 0xff, 0xff, 0x01], 1024),
            Sniff::NotConnect
        );
        assert_eq!(
            sniff_connect(&[0x10, 0xff, 0xff, 0x7f], 1024),
            Sniff::TooLarge
        );
        assert_eq!(sniff_connect(&[0x10, 2, 0, 9], 1024), Sniff::NotConnect);
    }

    #[test]
    fn v5_disconnect_without_reason_is_normal() {
        let mut buf = BytesMut::from(&[0xE0u8, 0x00][..]);
        let p = decode(Protocol::V5, &mut buf, 1024);
        assert!(matches!(
            p,
            Ok(Some(Inbound::Disconnect { with_will: false }))
        ));
        assert!(buf.is_empty());
        let mut buf = BytesMut::from(&[0xE0u8, 0x01, 0x04][..]);
        assert!(matches!(
            decode(Protocol::V5, &mut buf, 1024),
            Ok(Some(Inbound::Disconnect { with_will: true }))
        ));
        assert!(buf.is_empty());
        let mut with_props = BytesMut::from(&[0xE0u8, 0x02, 0x04, 0x00][..]);
        assert!(matches!(
            decode(Protocol::V5, &mut with_props, 1024),
            Ok(Some(Inbound::Disconnect { with_will: true }))
        ));
        let mut normal = BytesMut::from(&[0xE0u8, 0x02, 0x00, 0x00][..]);
        assert!(matches!(
            decode(Protocol::V5, &mut normal, 1024),
            Ok(Some(Inbound::Disconnect { with_will: false }))
        ));
    }

    #[test]
    fn garbage_never_panics() {
        // Every two-byte prefix followed by a few patterns, through both codecs.
        let tails: [&[u8]; 4] = [
            &[],
            &[0xff; 8],
            &[0x00; 8],
            &[0x00, 0x04, b'M', b'Q', b'T', b'T', 5, 0xff],
        ];
        for protocol in [Protocol::V4, Protocol::V5] {
            for a in 0..=255u8 {
                for len in [0u8, 1, 2, 3, 8, 0x7f, 0x80] {
                    for tail in tails {
                        let mut bytes = vec![a, len];
                        bytes.extend_from_slice(tail);
                        let mut buf = BytesMut::from(&bytes[..]);
                        for _ in 0..4 {
                            match decode(protocol, &mut buf, 1 << 20) {
                                Ok(Some(_)) => continue,
                                _ => break,
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn too_large_is_reported() {
        let mut buf = BytesMut::from(&[0x30u8, 0xff, 0xff, 0x7f][..]);
        assert_eq!(
            decode(Protocol::V4, &mut buf, 1024).err(),
            Some(DecodeError::TooLarge(2_097_151))
        );
    }
}
