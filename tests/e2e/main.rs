//! End-to-end tests: they start the real `civiclake` binary on a loopback port and talk to it
//! as users do (HTTP, the `sql` and `import` commands); `platform` runs the server
//! in-process to drive the module API.

mod auth;
mod browser;
mod bus;
mod cli;
mod council;
mod dashboards;
mod durability;
mod http_api;
mod kafka;
mod kiosk;
mod mqtt;
mod pipelines;
mod platform;
mod server;
mod simulate;
mod web;
mod wire;
