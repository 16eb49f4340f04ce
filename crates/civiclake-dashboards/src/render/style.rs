//! Colours, fonts and number formatting shared by the panel kinds.

use plotters::style::{FontDesc, FontStyle, IntoFont, RGBColor, TextStyle};

use crate::model::Colour;

/// Body text.
pub(crate) const TEXT: RGBColor = RGBColor(26, 26, 26);
/// Secondary text (axis descriptions, notes): 7:1 on white.
pub(crate) const MUTED: RGBColor = RGBColor(85, 85, 85);
/// Grid lines.
pub(crate) const GRID: RGBColor = RGBColor(226, 226, 226);
/// Axis lines and tick marks.
pub(crate) const AXIS: RGBColor = RGBColor(110, 110, 110);
/// Background of cells and areas without data.
pub(crate) const EMPTY_FILL: RGBColor = RGBColor(238, 238, 238);
/// Zebra stripes of tables.
pub(crate) const STRIPE: RGBColor = RGBColor(245, 245, 245);
/// Boundary outlines on maps.
pub(crate) const BOUNDARY: RGBColor = RGBColor(120, 120, 120);
/// The page background.
pub(crate) const BACKGROUND: RGBColor = RGBColor(255, 255, 255);

/// Series colours: the Okabe–Ito palette without its yellow (too faint on white), which
/// stays distinguishable with the common colour vision deficiencies. Series past the
/// seventh repeat the colours with dashed, then dotted lines.
pub(crate) const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(213, 94, 0),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

/// How the line of a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dash {
    Solid,
    Dashed,
    Dotted,
}

/// The colour and line pattern of the `i`-th series.
pub(crate) fn series_style(i: usize) -> (RGBColor, Dash) {
    let dash = match (i / PALETTE.len()) % 3 {
        0 => Dash::Solid,
        1 => Dash::Dashed,
        _ => Dash::Dotted,
    };
    (PALETTE[i % PALETTE.len()], dash)
}

/// Viridis (perceptually uniform, readable in greyscale and with colour vision
/// deficiencies), sampled at eleven stops.
const VIRIDIS: [(u8, u8, u8); 11] = [
    (68, 1, 84),
    (72, 36, 117),
    (65, 68, 135),
    (53, 95, 141),
    (42, 120, 142),
    (33, 145, 140),
    (34, 168, 132),
    (68, 191, 112),
    (122, 209, 81),
    (189, 223, 38),
    (253, 231, 37),
];

/// The colour of `t` in 0..=1 on the viridis scale (clamped).
pub(crate) fn viridis(t: f64) -> RGBColor {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let pos = t * (VIRIDIS.len() - 1) as f64;
    let i = (pos.floor() as usize).min(VIRIDIS.len() - 2);
    let f = pos - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |x: u8, y: u8| (f64::from(x) + (f64::from(y) - f64::from(x)) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// A threshold colour as a plotters colour.
pub(crate) fn rgb(c: Colour) -> RGBColor {
    RGBColor(c.r, c.g, c.b)
}

fn luminance(c: RGBColor) -> f64 {
    let lin = |v: u8| {
        let s = f64::from(v) / 255.0;
        if s <= 0.03928 {
            s / 12.92
        } else {
            ((s + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * lin(c.0) + 0.7152 * lin(c.1) + 0.0722 * lin(c.2)
}

/// Black or white, whichever contrasts more with `background` (WCAG contrast ratio).
pub(crate) fn text_on(background: RGBColor) -> RGBColor {
    let l = luminance(background);
    let with_black = (l + 0.05) / 0.05;
    let with_white = 1.05 / (l + 0.05);
    if with_black >= with_white {
        RGBColor(0, 0, 0)
    } else {
        RGBColor(255, 255, 255)
    }
}

/// The one font family: DejaVu Sans, embedded and registered under this name, which SVG
/// output uses as its `font-family` list.
pub(crate) const FAMILY: &str = "DejaVu Sans, sans-serif";
/// Title size (plotters units; the SVG font size is this / 1.24).
pub(crate) const TITLE_SIZE: f64 = 20.0;
/// Axis labels, legends, table cells.
pub(crate) const LABEL_SIZE: f64 = 15.0;
/// Notes and small labels.
pub(crate) const SMALL_SIZE: f64 = 13.0;

pub(crate) fn font(size: f64) -> FontDesc<'static> {
    (FAMILY, size).into_font()
}

pub(crate) fn text_style(size: f64, colour: RGBColor) -> TextStyle<'static> {
    font(size).color(&colour)
}

pub(crate) fn bold_style(size: f64, colour: RGBColor) -> TextStyle<'static> {
    font(size).style(FontStyle::Bold).color(&colour)
}

/// The width of `text` in pixels at `size`, measured with the embedded font.
pub(crate) fn text_width(text: &str, size: f64) -> u32 {
    font(size)
        .box_size(text)
        .map(|(w, _)| w)
        .unwrap_or_else(|_| (text.chars().count() as f64 * size * 0.6) as u32)
}

/// `text` cut with an ellipsis so that it is at most `max_px` wide.
pub(crate) fn fit_text(text: &str, size: f64, max_px: u32) -> String {
    if text_width(text, size) <= max_px {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    let (mut lo, mut hi) = (0usize, chars.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        let candidate: String = chars[..mid].iter().collect::<String>() + "…";
        if text_width(&candidate, size) <= max_px {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    if lo == 0 {
        return if text_width("…", size) <= max_px {
            "…".to_string()
        } else {
            String::new()
        };
    }
    chars[..lo].iter().collect::<String>() + "…"
}

/// A value with `decimals` decimals, or automatically: about three significant digits,
/// no trailing zeros.
pub(crate) fn format_value(v: f64, decimals: Option<u8>) -> String {
    if !v.is_finite() {
        return "—".to_string();
    }
    let text = match decimals {
        Some(d) => format!("{v:.*}", usize::from(d)),
        None => {
            let a = v.abs();
            let d = if a >= 100.0 || a == 0.0 {
                0
            } else if a >= 10.0 {
                1
            } else if a >= 1.0 {
                2
            } else {
                (2 - a.log10().floor() as i64).clamp(2, 10) as usize
            };
            let s = format!("{v:.d$}");
            if s.contains('.') {
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                s
            }
        }
    };
    normalise_zero(text)
}

/// `-0` and `-0.0` read as zero.
fn normalise_zero(text: String) -> String {
    if text.starts_with('-') && text[1..].chars().all(|c| c == '0' || c == '.') {
        text[1..].to_string()
    } else {
        text
    }
}

/// A tick label for `v` on a scale of step `step`: as many decimals as the step needs, and
/// k/M/G for large magnitudes.
pub(crate) fn format_tick(v: f64, step: f64, largest: f64) -> String {
    let (div, suffix) = if largest >= 1e9 {
        (1e9, "G")
    } else if largest >= 1e6 {
        (1e6, "M")
    } else if largest >= 1e4 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let step = step / div;
    let decimals = if step > 0.0 && step.is_finite() {
        let mut d = 0usize;
        while d < 10
            && ((step * 10f64.powi(d as i32)).round() - step * 10f64.powi(d as i32)).abs() > 1e-6
        {
            d += 1;
        }
        d
    } else {
        0
    };
    if v == 0.0 {
        return "0".to_string();
    }
    normalise_zero(format!("{:.*}{suffix}", decimals, v / div))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_ticks() {
        assert_eq!(format_value(41.234, None), "41.2");
        assert_eq!(format_value(2.34567, None), "2.35");
        assert_eq!(format_value(0.012345, None), "0.0123");
        assert_eq!(format_value(12345.6, None), "12346");
        assert_eq!(format_value(2.0, None), "2");
        assert_eq!(format_value(-0.0001, Some(1)), "0.0");
        assert_eq!(format_value(7.0, Some(2)), "7.00");
        assert_eq!(format_tick(2.5, 0.5, 10.0), "2.5");
        assert_eq!(format_tick(20.0, 5.0, 40.0), "20");
        assert_eq!(format_tick(25_000.0, 5_000.0, 50_000.0), "25k");
        assert_eq!(format_tick(0.0, 5_000.0, 50_000.0), "0");
        assert_eq!(format_tick(1_250_000.0, 250_000.0, 2e6), "1.25M");
        assert_eq!(format_tick(0.30000000000000004, 0.1, 1.0), "0.3");
    }

    #[test]
    fn contrast_and_scales() {
        assert_eq!(text_on(RGBColor(240, 228, 66)), RGBColor(0, 0, 0));
        assert_eq!(text_on(RGBColor(0, 114, 178)), RGBColor(255, 255, 255));
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(253, 231, 37));
        assert_eq!(viridis(0.5), RGBColor(33, 145, 140));
        assert_eq!(series_style(8), (PALETTE[1], Dash::Dashed));
        assert_eq!(series_style(15), (PALETTE[1], Dash::Dotted));
    }
}
