//! civiclake-mqtt's integration tests, one binary: the embedded broker against MQTT
//! clients and raw TCP (`broker`), `MqttSource` against rumqttd (`source`) and against
//! Debian's mosquitto (`mosquitto`, run in CI), with their shared helpers (`common`).

mod broker;
mod common;
mod mosquitto;
mod source;
