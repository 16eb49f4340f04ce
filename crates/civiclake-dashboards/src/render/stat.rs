//! Single stat panels: one value, large, on its threshold colour.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::data::Frame;
use super::draw_err;
use super::style::*;
use crate::error::DashboardError;
use crate::model::{Panel, PanelKind, Threshold};

/// The last non-null `value` of the result (so `ORDER BY time` shows the latest).
pub(crate) fn prepare(frame: &Frame<'_>) -> Result<Option<f64>, DashboardError> {
    let idx = frame.require("value", "a number; the last row's is shown")?;
    Ok(frame.numbers(idx)?.into_iter().flatten().next_back())
}

/// The colour of `v`: that of the last threshold at or below it; none below the first.
pub(crate) fn threshold_colour(thresholds: &[Threshold], v: f64) -> Option<RGBColor> {
    thresholds
        .iter()
        .rev()
        .find(|t| v >= t.value)
        .map(|t| rgb(t.colour))
}

pub(crate) fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    value: Option<f64>,
) -> Result<(), DashboardError> {
    let err = draw_err(panel);
    let (w, h) = area.dim_in_pixel();
    let thresholds: &[Threshold] = match &panel.kind {
        PanelKind::Stat { thresholds } => thresholds,
        _ => &[],
    };
    let background = value
        .and_then(|v| threshold_colour(thresholds, v))
        .unwrap_or(EMPTY_FILL);
    let (x0, y0, x1, y1) = (8, 4, w as i32 - 8, h as i32 - 8);
    area.draw(&Rectangle::new([(x0, y0), (x1, y1)], background.filled()))
        .map_err(&err)?;
    let ink = text_on(background);
    let text = match value {
        Some(v) => {
            let number = format_value(v, panel.decimals);
            match &panel.unit {
                Some(u) => format!("{number} {u}"),
                None => number,
            }
        }
        None => "No data".to_string(),
    };
    let box_w = (x1 - x0 - 24).max(20) as f64;
    let has_caption = panel.value_label.is_some();
    let box_h = (y1 - y0) as f64 * if has_caption { 0.55 } else { 0.7 };
    let base = 40.0;
    // Measured in the regular weight; bold is up to a tenth wider.
    let measured = text_width(&text, base).max(1) as f64 * 1.1;
    let size = if value.is_some() {
        (base * box_w / measured).min(box_h).clamp(12.0, 160.0)
    } else {
        (LABEL_SIZE * 1.4).min(box_h).max(10.0)
    };
    let cy = if has_caption {
        y0 + ((y1 - y0) as f64 * 0.42) as i32
    } else {
        (y0 + y1) / 2
    };
    area.draw(&Text::new(
        text,
        ((x0 + x1) / 2, cy),
        bold_style(size, ink).pos(Pos::new(HPos::Center, VPos::Center)),
    ))
    .map_err(&err)?;
    if let Some(caption) = &panel.value_label {
        let caption = fit_text(caption, LABEL_SIZE, box_w as u32);
        area.draw(&Text::new(
            caption,
            ((x0 + x1) / 2, y0 + ((y1 - y0) as f64 * 0.8) as i32),
            text_style(LABEL_SIZE, ink).pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(&err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Colour;

    #[test]
    fn thresholds_pick_the_last_reached() {
        let t = [
            Threshold {
                value: 0.0,
                colour: Colour::rgb(0, 158, 115),
            },
            Threshold {
                value: 40.0,
                colour: Colour::rgb(230, 159, 0),
            },
            Threshold {
                value: 50.0,
                colour: Colour::rgb(213, 94, 0),
            },
        ];
        assert_eq!(threshold_colour(&t, -1.0), None);
        assert_eq!(threshold_colour(&t, 0.0), Some(RGBColor(0, 158, 115)));
        assert_eq!(threshold_colour(&t, 45.0), Some(RGBColor(230, 159, 0)));
        assert_eq!(threshold_colour(&t, 50.0), Some(RGBColor(213, 94, 0)));
    }
}
