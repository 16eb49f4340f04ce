//! Bytes per row on disk after compaction, per table and per column: civiclake's Parquet
//! files next to the raw line protocol, DuckDB's own database file of the same rows and a
//! reference Parquet file written by pyarrow.

use super::{Part, Section, bytes};
use crate::ctx::Ctx;
use crate::server::dir_size;
use serde_json::{Value, json};

/// `storage`: bytes per row, per table and column.
pub(crate) struct Storage;

impl Part for Storage {
    fn name(&self) -> &'static str {
        "storage"
    }
    fn about(&self) -> &'static str {
        "bytes per row after compaction, per table and column, vs raw line protocol, DuckDB native and a pyarrow reference"
    }
    fn run(&self, ctx: &mut Ctx) -> Result<Section, String> {
        let sources = ctx.lake_sources()?;
        let lake = ctx.lake()?;
        eprintln!("[storage] compacting...");
        lake.server.flush()?;
        let compacted = lake.server.compact()?;
        let data_dir = lake.server.data.clone();
        let mut args = Vec::new();
        for s in &sources {
            args.push("--source".to_string());
            args.push(s.clone());
        }
        eprintln!("[storage] measuring files (DuckDB, pyarrow)...");
        let st = ctx.duckdb_side("storage", &args)?;
        let mut md = String::from(
            "### Storage after compaction\n\nBytes of the active Parquet files of each Delta table (zstd) per row, next to the line protocol that carried the rows, a DuckDB database file holding only that table (loaded sorted by sensor, time; after CHECKPOINT) and a reference Parquet file written by pyarrow (sorted by sensor then time, zstd, dictionary tags). Targets: no larger than DuckDB's file, within 10% of the pyarrow reference.\n\n| table | rows | civiclake B/row | line protocol B/row | DuckDB native B/row | pyarrow reference B/row | civiclake / DuckDB | civiclake / pyarrow | table directory B/row (with Delta log and files awaiting vacuum) |\n|---|---|---|---|---|---|---|---|---|\n",
        );
        let mut json_tables = serde_json::Map::new();
        let mut columns_md = String::new();
        let (mut all_rows, mut all_lake, mut all_duck, mut all_ref, mut all_lp) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        for (table, &rows) in &ctx.data.rows_per_table {
            let t = &st["tables"][*table];
            let lake_bytes = t["lake"]["bytes"].as_u64().unwrap_or(0);
            let duck = t["duckdb_native_bytes"].as_u64().unwrap_or(0);
            let reference = t["pyarrow_reference"]["bytes"].as_u64().unwrap_or(0);
            let lp = ctx.data.lp_bytes_per_table.get(table).copied().unwrap_or(0);
            let dir = dir_size(&data_dir.join("tables").join(table));
            if t["rows"].as_u64() != Some(rows) {
                return Err(format!(
                    "storage: the lake's files of {table} hold {} rows, {rows} were sent",
                    t["rows"]
                ));
            }
            all_rows += rows;
            all_lake += lake_bytes;
            all_duck += duck;
            all_ref += reference;
            all_lp += lp;
            let per = |b: u64| b as f64 / rows as f64;
            md.push_str(&format!(
                "| {table} | {rows} | **{:.2}** | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                per(lake_bytes),
                per(lp),
                per(duck),
                per(reference),
                lake_bytes as f64 / duck as f64,
                lake_bytes as f64 / reference as f64,
                per(dir),
            ));
            columns_md.push_str(&column_table(table, rows, t));
            json_tables.insert(
                (*table).to_string(),
                json!({
                    "rows": rows,
                    "lake_bytes": lake_bytes,
                    "lake_columns": t["lake"]["columns"],
                    "line_protocol_bytes": lp,
                    "duckdb_native_bytes": duck,
                    "pyarrow_reference_bytes": reference,
                    "pyarrow_reference_columns": t["pyarrow_reference"]["columns"],
                    "table_dir_bytes": dir,
                }),
            );
        }
        let per = |b: u64| b as f64 / all_rows as f64;
        md.push_str(&format!(
            "| **all** | {all_rows} | **{:.2}** | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | |\n\nCompaction before measuring: {} files merged into {}. Total: civiclake {}, line protocol {}, DuckDB {}, pyarrow {}.\n\n<details><summary>Per column (compressed bytes of the column chunks)</summary>\n\n{columns_md}</details>\n",
            per(all_lake),
            per(all_lp),
            per(all_duck),
            per(all_ref),
            all_lake as f64 / all_duck as f64,
            all_lake as f64 / all_ref as f64,
            compacted["files_removed"],
            compacted["files_added"],
            bytes(all_lake),
            bytes(all_lp),
            bytes(all_duck),
            bytes(all_ref),
        ));
        Ok(Section {
            markdown: md,
            json: json!({"tables": json_tables, "rows": all_rows, "lake_bytes": all_lake, "line_protocol_bytes": all_lp, "duckdb_native_bytes": all_duck, "pyarrow_reference_bytes": all_ref}),
        })
    }
}

/// The per-column table of one table.
fn column_table(table: &str, rows: u64, t: &Value) -> String {
    let mut out = format!(
        "**{table}**\n\n| column | civiclake bytes | civiclake B/row | pyarrow reference B/row |\n|---|---|---|---|\n"
    );
    if let Some(cols) = t["lake"]["columns"].as_object() {
        for (name, b) in cols {
            let b = b.as_u64().unwrap_or(0);
            let r = t["pyarrow_reference"]["columns"][name].as_u64();
            out.push_str(&format!(
                "| {name} | {b} | {:.3} | {} |\n",
                b as f64 / rows as f64,
                r.map_or("-".into(), |r| format!("{:.3}", r as f64 / rows as f64))
            ));
        }
    }
    out.push('\n');
    out
}
