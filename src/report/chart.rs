//! Convergence charts with plotters, as PNG and SVG, in the embedded DejaVu Sans font (no
//! fontconfig or freetype needed): accuracy and loss by round and by virtual time,
//! participation per round, markers for dropouts, quits, joins and late rejections; a heatmap
//! for cross-site validation; and overlays of several runs.

use std::ops::Range;
use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::data::{MarkerKind, RunData};
use super::{atomic, ReportError};
use crate::sim::CrossSiteMatrix;

/// What drawing gives: plotters' error, as text (its type depends on the backend).
type Res = Result<(), DrawError>;

/// A drawing error, whatever the backend.
#[derive(Debug)]
pub struct DrawError(String);

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for DrawError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        DrawError(e.to_string())
    }
}

/// Chart size in pixels.
pub const SIZE: (u32, u32) = (1600, 1100);
const FONT: &str = "sans-serif";

static FONT_ONCE: Once = Once::new();

/// Registers the embedded font under plotters' "sans-serif" name.
fn font() {
    FONT_ONCE.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/DejaVuSans.ttf");
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, bytes);
    });
}

/// Something that draws itself on any plotters backend.
pub trait Drawing {
    /// Draws on `root`.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Res
    where
        DB::ErrorType: 'static;
}

/// A run's convergence chart.
pub struct Convergence<'a>(pub &'a RunData);
/// A cross-site validation heatmap.
pub struct Heatmap<'a>(pub &'a CrossSiteMatrix);
/// Several runs overlaid.
pub struct Compare<'a>(pub &'a [RunData]);

impl Drawing for Convergence<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Res
    where
        DB::ErrorType: 'static,
    {
        convergence(root, self.0)
    }
}

impl Drawing for Heatmap<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Res
    where
        DB::ErrorType: 'static,
    {
        heatmap(root, self.0)
    }
}

impl Drawing for Compare<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Res
    where
        DB::ErrorType: 'static,
    {
        compare(root, self.0)
    }
}

/// Draws `d` into `png` and the same path with `.svg`, each written whole.
pub fn render(png: &Path, size: (u32, u32), d: &impl Drawing) -> Result<(), ReportError> {
    font();
    let chart_error = |path: &Path, reason: String| ReportError::Chart {
        path: path.to_path_buf(),
        reason,
    };
    let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
    draw_into(BitMapBackend::with_buffer(&mut rgb, size), d).map_err(|e| chart_error(png, e.0))?;
    let bytes = encode_png(&rgb, size).map_err(|e| chart_error(png, e.to_string()))?;
    atomic::write(png, &bytes).map_err(ReportError::Write)?;
    let svg_path = png.with_extension("svg");
    let mut svg = String::new();
    draw_into(SVGBackend::with_string(&mut svg, size), d)
        .map_err(|e| chart_error(&svg_path, e.0))?;
    atomic::write(&svg_path, svg.as_bytes()).map_err(ReportError::Write)
}

/// Draws `d` on a backend and finishes it.
fn draw_into<DB: DrawingBackend>(backend: DB, d: &impl Drawing) -> Res
where
    DB::ErrorType: 'static,
{
    let root = backend.into_drawing_area();
    d.draw(&root)?;
    root.present()?;
    Ok(())
}

/// `rgb` (8-bit RGB rows) as PNG bytes. plotters can write PNGs itself, but through the
/// `image` crate, which would be the largest crate in the build.
fn encode_png(rgb: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    // A filter chosen per row: charts are mostly flat colour, and this halves the file.
    enc.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
    let mut writer = enc.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

/// Writes `convergence.png/svg` (and `cross_site.png/svg` when there is a matrix) for a run.
pub fn write_charts(dir: &Path, d: &RunData) -> Result<(), ReportError> {
    render(&dir.join("convergence.png"), SIZE, &Convergence(d))?;
    if let Some(m) = &d.cross_site {
        render(&dir.join("cross_site.png"), (1200, 1000), &Heatmap(m))?;
    }
    Ok(())
}

fn marker_color(k: MarkerKind) -> RGBColor {
    match k {
        MarkerKind::Dropout => RGBColor(230, 140, 0),
        MarkerKind::Quit => RGBColor(140, 60, 170),
        MarkerKind::Join => RGBColor(0, 150, 150),
        MarkerKind::Late => RGBColor(220, 30, 120),
    }
}

const ACC: RGBColor = RGBColor(31, 90, 180);
const LOSS: RGBColor = RGBColor(200, 60, 40);

/// Time on the x axis in a readable unit.
fn time_unit(max_us: u64) -> (f64, &'static str) {
    match max_us {
        t if t < 120_000_000 => (1e6, "virtual time (s)"),
        t if t < 7_200_000_000 => (6e7, "virtual time (min)"),
        _ => (3.6e9, "virtual time (h)"),
    }
}

/// The round in progress at time `t`: the first that ends after it (a round starting at the
/// instant the previous one ends owns that instant).
fn round_at(d: &RunData, t: u64) -> Option<f64> {
    let r = d.rounds.iter().find(|r| r.t_us > t).or(d.rounds.last())?;
    Some(f64::from(r.round))
}

fn loss_range(d: &RunData) -> Range<f64> {
    let max = d
        .rounds
        .iter()
        .map(|r| r.test_loss)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    0.0..(max * 1.1).max(1e-3)
}

fn round_range(d: &RunData) -> Range<f64> {
    let first = d.rounds.first().map_or(0.0, |r| f64::from(r.round));
    let last = d.rounds.last().map_or(1.0, |r| f64::from(r.round));
    (first - 0.5)..(last + 0.5).max(first + 0.5)
}

/// The three-panel convergence chart.
pub fn convergence<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &RunData) -> Res
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let root = root.titled(&format!("fedsim: {}", d.name), (FONT, 34))?;
    let (top, bottom) = root.split_vertically(600);
    let (left, right) = top.split_horizontally(800);
    by_round(&left, d)?;
    by_time(&right, d)?;
    participation(&bottom, d)?;
    Ok(())
}

/// The x axis of an accuracy-and-loss panel.
#[derive(Clone, Copy)]
enum XAxis {
    /// Round numbers.
    Round,
    /// Virtual time, divided by `scale` for the unit named in `desc`.
    Time { scale: f64, desc: &'static str },
}

impl XAxis {
    fn of_round(self, r: &crate::sim::RoundStats) -> f64 {
        match self {
            XAxis::Round => f64::from(r.round),
            XAxis::Time { scale, .. } => r.t_us as f64 / scale,
        }
    }

    fn of_time(self, d: &RunData, t: u64) -> Option<f64> {
        match self {
            XAxis::Round => round_at(d, t),
            XAxis::Time { scale, .. } => Some(t as f64 / scale),
        }
    }
}

fn by_round<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, d: &RunData) -> Res
where
    DB::ErrorType: 'static,
{
    accuracy_and_loss(
        area,
        d,
        "Test accuracy and loss by round",
        XAxis::Round,
        round_range(d),
    )
}

fn by_time<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, d: &RunData) -> Res
where
    DB::ErrorType: 'static,
{
    let max_t = d.rounds.last().map_or(1, |r| r.t_us.max(1));
    let (scale, desc) = time_unit(max_t);
    let xr = 0.0..(max_t as f64 / scale * 1.02).max(1e-6);
    accuracy_and_loss(
        area,
        d,
        "Test accuracy and loss by virtual time",
        XAxis::Time { scale, desc },
        xr,
    )
}

/// Accuracy (left axis) and loss (right axis) against `axis`, with the run's markers.
fn accuracy_and_loss<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    d: &RunData,
    caption: &str,
    axis: XAxis,
    xr: Range<f64>,
) -> Res
where
    DB::ErrorType: 'static,
{
    let mut c = ChartBuilder::on(area)
        .caption(caption, (FONT, 24))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .right_y_label_area_size(70)
        .build_cartesian_2d(xr.clone(), 0.0..1.0)?
        .set_secondary_coord(xr, loss_range(d));
    let mut mesh = c.configure_mesh();
    mesh.y_desc("test accuracy")
        .label_style((FONT, 18))
        .axis_desc_style((FONT, 20));
    match axis {
        XAxis::Round => mesh.x_desc("round").x_label_formatter(&whole),
        XAxis::Time { desc, .. } => mesh.x_desc(desc),
    };
    mesh.draw()?;
    c.configure_secondary_axes()
        .y_desc("test loss")
        .label_style((FONT, 18))
        .axis_desc_style((FONT, 20))
        .draw()?;
    let acc = d.rounds.iter().map(|r| (axis.of_round(r), r.test_accuracy));
    c.draw_series(LineSeries::new(acc, ACC.stroke_width(3)).point_size(3))?
        .label("test accuracy")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], ACC.stroke_width(3)));
    let loss = d.rounds.iter().map(|r| (axis.of_round(r), r.test_loss));
    c.draw_secondary_series(LineSeries::new(loss, LOSS.stroke_width(3)))?
        .label("test loss (right axis)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], LOSS.stroke_width(3)));
    draw_markers(&mut c, &marker_xs(d, axis), 0.0..1.0)?;
    if let XAxis::Round = axis {
        legend(&mut c, SeriesLabelPosition::LowerRight)?;
    }
    Ok(())
}

fn participation<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, d: &RunData) -> Res
where
    DB::ErrorType: 'static,
{
    let ymax = d
        .rounds
        .iter()
        .map(|r| r.selected.max(r.contributed + r.rejected))
        .max()
        .unwrap_or(1) as f64
        * 1.15
        + 1.0;
    let mut c = ChartBuilder::on(area)
        .caption("Participation per round", (FONT, 24))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(round_range(d), 0.0..ymax)?;
    c.configure_mesh()
        .x_desc("round")
        .y_desc("clients")
        .x_label_formatter(&whole)
        .y_label_formatter(&whole)
        .label_style((FONT, 18))
        .axis_desc_style((FONT, 20))
        .draw()?;
    let series: [Series; 3] = [
        ("selected", RGBColor(60, 60, 60), |r| r.selected),
        ("contributed", RGBColor(40, 150, 60), |r| r.contributed),
        ("rejected", RGBColor(210, 40, 40), |r| r.rejected),
    ];
    for (label, color, get) in series {
        let pts = d
            .rounds
            .iter()
            .map(move |r| (f64::from(r.round), get(r) as f64));
        c.draw_series(LineSeries::new(pts, color.stroke_width(3)).point_size(4))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
    }
    draw_markers(&mut c, &marker_xs(d, XAxis::Round), 0.0..ymax)?;
    legend(&mut c, SeriesLabelPosition::UpperRight)?;
    Ok(())
}

/// Each marker's x position on `axis`.
fn marker_xs(d: &RunData, axis: XAxis) -> Vec<(f64, MarkerKind)> {
    d.markers
        .iter()
        .filter_map(|(t, k)| axis.of_time(d, *t).map(|x| (x, *k)))
        .collect()
}

/// The legend box, in the same style on every chart.
fn legend<'a, DB, CT>(c: &mut ChartContext<'a, DB, CT>, position: SeriesLabelPosition) -> Res
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: CoordTranslate,
{
    c.configure_series_labels()
        .position(position)
        .label_font((FONT, 18))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// A participation line: its label, colour and value.
type Series = (&'static str, RGBColor, fn(&crate::sim::RoundStats) -> usize);

/// A comparison panel: area, caption, x range, x label, and whether x is time.
type Panel<'a, DB> = (
    &'a DrawingArea<DB, Shift>,
    &'static str,
    Range<f64>,
    &'static str,
    bool,
);

/// Whole numbers as such, other ticks left blank (rounds and client counts are integers).
fn whole(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        String::new()
    }
}

/// Vertical lines at each marker's x, one legend entry per kind present.
fn draw_markers<DB: DrawingBackend, Y: plotters::coord::ranged1d::Ranged<ValueType = f64>>(
    c: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    marks: &[(f64, MarkerKind)],
    y: Range<f64>,
) -> Res
where
    DB::ErrorType: 'static,
{
    let mut kinds: Vec<MarkerKind> = marks.iter().map(|m| m.1).collect();
    kinds.sort();
    kinds.dedup();
    // Offset kinds slightly so markers at the same x stay visible side by side.
    for (i, k) in kinds.into_iter().enumerate() {
        let color = marker_color(k);
        let mut xs: Vec<f64> = marks.iter().filter(|m| m.1 == k).map(|m| m.0).collect();
        xs.dedup();
        let dx = (i as f64 - 1.5) * 0.06;
        let lines = xs.into_iter().map(move |x| {
            PathElement::new(
                vec![(x + dx, y.start), (x + dx, y.end)],
                color.mix(0.7).stroke_width(2),
            )
        });
        c.draw_series(lines)?
            .label(k.label())
            .legend(move |(x, y)| {
                PathElement::new(
                    vec![(x + 12, y - 8), (x + 12, y + 8)],
                    color.stroke_width(3),
                )
            });
    }
    Ok(())
}

/// A client × model accuracy heatmap.
pub fn heatmap<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, m: &CrossSiteMatrix) -> Res
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let (rows, cols) = (m.clients.len().max(1), m.models.len().max(1));
    let mut c = ChartBuilder::on(root)
        .caption(
            "Cross-site validation: accuracy of each model on each client's data",
            (FONT, 26),
        )
        .margin(20)
        .x_label_area_size(80)
        .y_label_area_size(140)
        .build_cartesian_2d(0.0..cols as f64, 0.0..rows as f64)?;
    let models = m.models.clone();
    let clients = m.clients.clone();
    c.configure_mesh()
        .disable_mesh()
        .x_labels(cols * 2 + 1)
        .y_labels(rows * 2 + 1)
        .x_label_formatter(&|x| label_at(&models, *x))
        .y_label_formatter(&|y| label_at(&clients, *y))
        .x_desc("model (owner)")
        .y_desc("validating client")
        .label_style((FONT, 18))
        .axis_desc_style((FONT, 20))
        .draw()?;
    for (i, row) in m.accuracy.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            let (x, y) = (j as f64, i as f64);
            let fill = v.map_or(RGBColor(220, 220, 220), viridis);
            c.draw_series(std::iter::once(Rectangle::new(
                [(x, y), (x + 1.0, y + 1.0)],
                fill.filled(),
            )))?;
            let text = v.map_or("-".to_string(), |a| format!("{a:.2}"));
            let ink = if v.is_some_and(|a| a > 0.6) {
                BLACK
            } else {
                WHITE
            };
            c.draw_series(std::iter::once(Text::new(
                text,
                (x + 0.38, y + 0.45),
                (FONT, 22).into_font().color(&ink),
            )))?;
        }
    }
    Ok(())
}

/// The name for a cell centre at `v` (labels fall on half-integers).
fn label_at(names: &[String], v: f64) -> String {
    let i = v - 0.5;
    if (i - i.round()).abs() < 1e-6 && i >= 0.0 {
        names.get(i.round() as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

/// A perceptually ordered colour for `t` in [0, 1] (a few stops of viridis).
fn viridis(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 5] = [
        (68, 1, 84),
        (59, 82, 139),
        (33, 145, 140),
        (94, 201, 98),
        (253, 231, 37),
    ];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let (i, f) = (t.floor() as usize, t - t.floor());
    let (a, b) = (STOPS[i], STOPS[(i + 1).min(STOPS.len() - 1)]);
    let mix = |x: u8, y: u8| (f64::from(x) + (f64::from(y) - f64::from(x)) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Several runs overlaid: accuracy by round and by virtual time, one colour per run.
pub fn compare<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, runs: &[RunData]) -> Res
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    let root = root.titled(&format!("fedsim: {}", names.join(" vs ")), (FONT, 30))?;
    let (left, right) = root.split_horizontally(SIZE.0 / 2);
    let last = runs
        .iter()
        .flat_map(|r| r.rounds.last())
        .map(|r| f64::from(r.round))
        .fold(1.0, f64::max);
    let max_t = runs
        .iter()
        .flat_map(|r| r.rounds.last())
        .map(|r| r.t_us)
        .max()
        .unwrap_or(1)
        .max(1);
    let (scale, desc) = time_unit(max_t);
    let panels: [Panel<'_, DB>; 2] = [
        (
            &left,
            "Test accuracy by round",
            -0.5..last + 0.5,
            "round",
            false,
        ),
        (
            &right,
            "Test accuracy by virtual time",
            0.0..max_t as f64 / scale * 1.02,
            desc,
            true,
        ),
    ];
    for (area, caption, xr, xdesc, by_time) in panels {
        let mut c = ChartBuilder::on(area)
            .caption(caption, (FONT, 24))
            .margin(15)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(xr, 0.0..1.0)?;
        c.configure_mesh()
            .x_desc(xdesc)
            .y_desc("test accuracy")
            .label_style((FONT, 18))
            .axis_desc_style((FONT, 20))
            .draw()?;
        for (i, run) in runs.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts = run.rounds.iter().map(move |r| {
                (
                    if by_time {
                        r.t_us as f64 / scale
                    } else {
                        f64::from(r.round)
                    },
                    r.test_accuracy,
                )
            });
            c.draw_series(LineSeries::new(pts, color.stroke_width(3)))?
                .label(run.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
                });
        }
        legend(&mut c, SeriesLabelPosition::LowerRight)?;
    }
    Ok(())
}
