//! Dashboards for planners: TOML files in `dashboards/`, panel SQL with macros and
//! variables, and panels drawn server-side to SVG (or PNG) from Arrow record batches.
//!
//! This crate runs no query and serves no HTTP: the server loads a [`DashboardSet`] and the
//! [`GeoLayers`], reads a [`PanelRequest`] from the query string, asks
//! [`Dashboard::panel_sql`] for the SQL to run, runs it, and hands the result to
//! [`render_svg`] / [`render_png`] (or [`render_error_svg`] when the query failed).
//!
//! # Dashboard files
//!
//! One TOML file per dashboard; its id is the file stem. Unknown keys are errors.
//!
//! ```toml
//! title = "Air quality"                 # required
//! description = "NO₂ across districts"  # optional
//! refresh = "1m"                        # default 1m, at least 5s
//!
//! [time]                                # optional; default "last 24h" and the standard list
//! default = "last 24h"
//! choices = ["last 6h", "last 24h", "last 7d"]
//!
//! [[variables]]
//! name = "district"                     # used as ${district}, $district, $__filter(col, district)
//! label = "District"
//! values = ["Centro", "Nord", "Sud"]    # or: query = "SELECT DISTINCT district FROM sensors"
//! all = true                            # offers "All" ($__all)
//! default = "Centro"                    # default: All when offered, else the first value
//!
//! [[panels]]
//! id = "no2"                            # unique, letters/digits/-/_
//! title = "NO₂"
//! kind = "timeseries"                   # see the kinds below
//! unit = "µg/m³"
//! value_label = "NO₂"                   # value axis: "NO₂ (µg/m³)"
//! sql = "SELECT ..."
//! # by kind: min, max (axis or colour scale), decimals, bins (histogram), max_rows (table),
//! # thresholds (stat), layers and fill (map)
//! ```
//!
//! # SQL macros
//!
//! Expanded by [`Dashboard::panel_sql`]; never inside quoted strings, quoted identifiers or
//! comments. Malformed macros and undeclared variables are errors when the file is loaded.
//!
//! | macro | expands to |
//! |---|---|
//! | `$__from`, `$__to` | `TIMESTAMP '2026-05-04T22:00:00Z'` (UTC) |
//! | `$__interval` | `INTERVAL '108 seconds'`: (to − from) / width in pixels, rounded up to a whole second, at least 1 s |
//! | `$__timeFilter(col)` | `(col >= <from> AND col < <to>)` |
//! | `${var}`, `$var` | the value as an SQL string literal, `'Sant''Ippolito'` |
//! | `$__filter(col, var)` | `(col = '<value>')`, or `TRUE` when All is selected |
//!
//! Values are never pasted as raw text: they are quoted (single quotes doubled), control
//! characters are refused, and values of a static list must be in it. A variable with an
//! All choice can only be used through `$__filter`, which is checked at load.
//! Downsample to the pixel width with `date_bin($__interval, time, $__from)` and
//! `min(v) AS min, max(v) AS max` for the band.
//!
//! # Columns each kind draws
//!
//! Names match exactly or, failing that, ignoring case. A missing or mistyped column is a
//! [`DashboardError::Data`] naming it; an empty result draws the frame with "No data".
//!
//! | kind | columns |
//! |---|---|
//! | `timeseries` | `time` (timestamp) + one line per numeric column; or long `time, series, value`. Band: `min`, `max` (one value column, or long form) or `<col>_min`, `<col>_max` |
//! | `bar` | `label, value` (row order) |
//! | `stacked_bar` | `label, series, value` (order of first appearance; repeats add up) |
//! | `histogram` | `value`, binned here into `bins` (default 20) over the data or `min`–`max` |
//! | `heatmap` | `time, value` (local day × hour computed here, means per cell), or `day, hour, value` with `day` a date, a weekday name (English or Italian) or `date_part('dow', …)` (0 = Sunday) |
//! | `table` | any columns; first `max_rows` (default 20) rows and "N more rows" |
//! | `stat` | `value`: the last non-null one; `thresholds` colour it |
//! | `map` | `lat, lon, value` (+ `label`), over the `layers` boundaries; `fill = "mean"` colours each boundary by the mean of its points |
//!
//! Times are shown in Europe/Rome local time; time series span the request's range.
//! Series colours are the Okabe–Ito palette (then dashed and dotted lines), scales viridis.

mod error;
mod geolayers;
mod model;
mod render;
mod request;
mod sql;

pub use error::DashboardError;

/// The files of `dir` (not recursively) whose extension is `ext`, sorted by path.
fn files_with_extension(
    dir: &std::path::Path,
    ext: &str,
) -> Result<Vec<std::path::PathBuf>, DashboardError> {
    let io = |source| DashboardError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == ext) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
pub use geolayers::{Boundary, GeoLayer, GeoLayers};
pub use model::{
    ALL_VALUE, COLOUR_NAMES, Colour, DEFAULT_BINS, DEFAULT_CHOICES, DEFAULT_MAX_ROWS,
    DEFAULT_REFRESH, Dashboard, DashboardSet, MIN_REFRESH, MapFill, Panel, PanelKind,
    RelativeRange, Threshold, TimeSettings, Variable, VariableSource,
};
pub use render::data::variable_choices;
pub use render::network::{Marker, MarkerShape, MarkerStyle, NetworkMap, render_network_svg};
pub use render::{render_error_svg, render_error_svg_sized, render_png, render_svg};
pub use request::{
    DEFAULT_HEIGHT_PX, DEFAULT_WIDTH_PX, HEIGHT_RANGE, PanelRequest, WIDTH_RANGE, parse_time,
};
pub use sql::{MAX_VALUE_CHARS, check_value, quote_literal};
