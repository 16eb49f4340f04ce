//! civiclake-sim's integration tests, one binary: the generator (`generator`), the map and
//! the sensors' places (`geography`), and the live city (`live`).

mod generator;
mod geography;
mod live;
