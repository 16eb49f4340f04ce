//! Table panels: the first rows of any result, as an SVG table.

use arrow::array::Array;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::axis::local_datetime;
use super::data::Frame;
use super::style::*;
use super::{draw_err, draw_no_data};
use crate::error::DashboardError;
use crate::model::Panel;

/// The cells to draw, already formatted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Table {
    pub(crate) header: Vec<String>,
    /// Numbers are right-aligned.
    pub(crate) numeric: Vec<bool>,
    pub(crate) rows: Vec<Vec<String>>,
    /// All rows of the result.
    pub(crate) total_rows: usize,
}

const NULL: &str = "—";

/// Formats the first `max_rows` rows: timestamps in local time, floats with the panel's
/// decimals, everything else as Arrow displays it.
pub(crate) fn prepare(frame: &Frame<'_>, max_rows: usize) -> Result<Table, DashboardError> {
    let total_rows = frame.num_rows();
    let take = total_rows.min(max_rows);
    let ncols = frame.schema.fields().len();
    let mut columns: Vec<Vec<String>> = Vec::with_capacity(ncols);
    let mut numeric = Vec::with_capacity(ncols);
    for idx in 0..ncols {
        let dt = frame.data_type(idx).clone();
        numeric.push(dt.is_numeric());
        let mut cells = Vec::with_capacity(take);
        match dt {
            DataType::Timestamp(_, _) => {
                for t in frame.times(idx)?.into_iter().take(take) {
                    cells.push(t.map_or_else(|| NULL.to_string(), local_datetime));
                }
            }
            DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal32(_, _)
            | DataType::Decimal64(_, _)
            | DataType::Decimal128(_, _)
            | DataType::Decimal256(_, _) => {
                for v in frame.numbers(idx)?.into_iter().take(take) {
                    cells.push(v.map_or_else(
                        || NULL.to_string(),
                        |v| format_value(v, frame.panel.decimals),
                    ));
                }
            }
            _ => {
                let options = FormatOptions::default().with_null(NULL);
                'batches: for array in frame.column_arrays(idx)? {
                    let formatter =
                        ArrayFormatter::try_new(array.as_ref(), &options).map_err(|e| {
                            frame.err(format!("column `{}`: {e}", frame.schema.field(idx).name()))
                        })?;
                    for row in 0..array.len() {
                        if cells.len() == take {
                            break 'batches;
                        }
                        cells.push(formatter.value(row).to_string());
                    }
                }
            }
        }
        columns.push(cells);
    }
    let rows = (0..take)
        .map(|r| {
            columns
                .iter()
                .map(|c| c.get(r).cloned().unwrap_or_default())
                .collect()
        })
        .collect();
    Ok(Table {
        header: frame.field_names(),
        numeric,
        rows,
        total_rows,
    })
}

const ROW_H: i32 = 22;
const PAD: i32 = 8;

/// Column widths that fit `width`: each column as wide as its widest cell, then the widest
/// ones narrowed until the table fits.
fn column_widths(table: &Table, width: u32) -> Vec<u32> {
    let mut widths: Vec<u32> = (0..table.header.len())
        .map(|c| {
            let head = text_width(&table.header[c], LABEL_SIZE);
            let cells = table.rows.iter().map(|r| text_width(&r[c], LABEL_SIZE));
            cells.fold(head, u32::max) + 2 * PAD as u32
        })
        .collect();
    let avail = width.saturating_sub(16);
    let min_w = 40u32;
    while widths.iter().sum::<u32>() > avail {
        let Some((i, &widest)) = widths
            .iter()
            .enumerate()
            .max_by_key(|(i, w)| (**w, usize::MAX - i))
        else {
            break;
        };
        if widest <= min_w {
            break;
        }
        let excess = widths.iter().sum::<u32>() - avail;
        widths[i] = widest.saturating_sub(excess).max(min_w).max(widest * 3 / 4);
    }
    widths
}

pub(crate) fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    table: &Table,
) -> Result<(), DashboardError> {
    let err = draw_err(panel);
    if table.header.is_empty() {
        return draw_no_data(area, panel);
    }
    let (w, h) = area.dim_in_pixel();
    let widths = column_widths(table, w);
    let x0 = 8i32;
    // Columns that do not fit at all are left out, with a note.
    let mut shown_cols = 0;
    let mut right = x0;
    for &cw in &widths {
        if right + cw as i32 > w as i32 - 4 && shown_cols > 0 {
            break;
        }
        right += cw as i32;
        shown_cols += 1;
    }
    let hidden_cols = widths.len() - shown_cols;
    let footer_h = ROW_H;
    let fit_rows = ((h as i32 - ROW_H - footer_h - 4) / ROW_H).max(0) as usize;
    let drawn = table.rows.len().min(fit_rows);

    let header_y = 2;
    let mut x = x0;
    for (c, &cw) in widths.iter().enumerate().take(shown_cols) {
        let cw = cw as i32;
        let label = fit_text(&table.header[c], LABEL_SIZE, (cw - 2 * PAD).max(0) as u32);
        let (anchor, tx) = if table.numeric[c] {
            (HPos::Right, x + cw - PAD)
        } else {
            (HPos::Left, x + PAD)
        };
        area.draw(&Text::new(
            label,
            (tx, header_y + ROW_H / 2),
            bold_style(LABEL_SIZE, TEXT).pos(Pos::new(anchor, VPos::Center)),
        ))
        .map_err(&err)?;
        x += cw;
    }
    area.draw(&PathElement::new(
        vec![(x0, header_y + ROW_H), (right, header_y + ROW_H)],
        AXIS.stroke_width(1),
    ))
    .map_err(&err)?;

    for (r, row) in table.rows.iter().take(drawn).enumerate() {
        let top = header_y + ROW_H * (r as i32 + 1) + 1;
        if r % 2 == 1 {
            area.draw(&Rectangle::new(
                [(x0, top), (right, top + ROW_H)],
                STRIPE.filled(),
            ))
            .map_err(&err)?;
        }
        let mut x = x0;
        for (c, &cw) in widths.iter().enumerate().take(shown_cols) {
            let cw = cw as i32;
            let text = fit_text(&row[c], LABEL_SIZE, (cw - 2 * PAD).max(0) as u32);
            let (anchor, tx) = if table.numeric[c] {
                (HPos::Right, x + cw - PAD)
            } else {
                (HPos::Left, x + PAD)
            };
            let colour = if row[c] == NULL { MUTED } else { TEXT };
            area.draw(&Text::new(
                text,
                (tx, top + ROW_H / 2),
                text_style(LABEL_SIZE, colour).pos(Pos::new(anchor, VPos::Center)),
            ))
            .map_err(&err)?;
            x += cw;
        }
    }

    let mut notes = Vec::new();
    if table.total_rows == 0 {
        notes.push("No data".to_string());
    } else if table.total_rows > drawn {
        let more = table.total_rows - drawn;
        notes.push(format!(
            "{more} more row{}",
            if more == 1 { "" } else { "s" }
        ));
    }
    if hidden_cols > 0 {
        notes.push(format!(
            "{hidden_cols} more column{}",
            if hidden_cols == 1 { "" } else { "s" }
        ));
    }
    if !notes.is_empty() {
        let top = header_y + ROW_H * (drawn as i32 + 1) + 4;
        area.draw(&Text::new(
            notes.join(", "),
            (x0 + PAD, top + ROW_H / 2),
            text_style(LABEL_SIZE, MUTED).pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(&err)?;
    }
    Ok(())
}
