//! A dataset as the trainer reads it: feature rows in the kernels' padded layout, and their
//! targets (class labels or values).

use std::ops::Range;

use ndarray::{ArrayView2, ShapeBuilder};

use super::kernel;

/// What a dataset's targets are.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Class indices, for classification.
    Classes(Vec<u32>),
    /// Real values, for regression.
    Values(Vec<f32>),
}

impl Targets {
    /// The number of targets.
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes(c) => c.len(),
            Targets::Values(v) => v.len(),
        }
    }

    /// True when there are no targets.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Features (one row per sample) and their targets.
///
/// The features are kept in the kernels' layout ([`kernel`]): rows padded with zeros to
/// whole lanes. Training and scoring then read their batches in place, rather than padding a
/// copy of every batch, every epoch, every round.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// `len()` rows of `padded(features)` floats, the padding zero.
    rows: Vec<f32>,
    features: usize,
    /// One target per row.
    pub y: Targets,
}

impl Dataset {
    /// A dataset of the rows of `x` (samples × features) and one target per row.
    pub fn new(x: ArrayView2<f32>, y: Targets) -> Dataset {
        assert_eq!(x.nrows(), y.len(), "one target per row");
        let (d, mut rows) = (x.ncols(), Vec::new());
        let x = x.as_standard_layout();
        kernel::pad_rows(x.as_slice().expect("standard layout"), d, &mut rows);
        Dataset::padded(rows, d, y)
    }

    /// A dataset of rows already in the padded layout.
    pub(crate) fn padded(rows: Vec<f32>, features: usize, y: Targets) -> Dataset {
        debug_assert_eq!(rows.len(), y.len() * kernel::padded(features));
        Dataset { rows, features, y }
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of features per sample.
    pub fn features(&self) -> usize {
        self.features
    }

    /// The features, samples × features (a view into the padded rows).
    pub fn x(&self) -> ArrayView2<'_, f32> {
        let shape = (self.len(), self.features).strides((kernel::padded(self.features), 1));
        ArrayView2::from_shape(shape, &self.rows).expect("rows cover the shape")
    }

    /// Rows `rows` in the kernels' padded layout.
    pub(crate) fn padded_rows(&self, rows: Range<usize>) -> &[f32] {
        let stride = kernel::padded(self.features);
        &self.rows[rows.start * stride..rows.end * stride]
    }

    /// The targets of rows `start..end`.
    pub fn targets(&self, start: usize, end: usize) -> TargetsView<'_> {
        match &self.y {
            Targets::Classes(c) => TargetsView::Classes(&c[start..end]),
            Targets::Values(v) => TargetsView::Values(&v[start..end]),
        }
    }

    /// A copy of rows `rows`.
    pub(crate) fn select(&self, rows: Range<usize>) -> Dataset {
        let x = self.padded_rows(rows.clone()).to_vec();
        Dataset::padded(
            x,
            self.features,
            slice_targets(&self.y, rows.start, rows.end),
        )
    }

    /// Concatenates datasets of the same kind.
    pub fn concat(parts: &[Dataset]) -> Dataset {
        let features = parts.first().map_or(0, |p| p.features);
        assert!(
            parts.iter().all(|p| p.features == features),
            "same feature count"
        );
        // Parts of the other kind than the first contribute nothing.
        let same =
            |p: &&Dataset| std::mem::discriminant(&p.y) == std::mem::discriminant(&parts[0].y);
        let mut rows = Vec::with_capacity(parts.iter().map(|p| p.rows.len()).sum());
        for p in parts.iter().filter(same) {
            rows.extend_from_slice(&p.rows);
        }
        let y = match parts.first().map(|p| &p.y) {
            Some(Targets::Values(_)) => Targets::Values(joined(parts, |y| match y {
                Targets::Values(v) => v,
                Targets::Classes(_) => &[],
            })),
            _ => Targets::Classes(joined(parts, |y| match y {
                Targets::Classes(c) => c,
                Targets::Values(_) => &[],
            })),
        };
        Dataset::padded(rows, features, y)
    }
}

/// A borrowed slice of targets.
#[derive(Debug, Clone, Copy)]
pub enum TargetsView<'a> {
    /// Class indices.
    Classes(&'a [u32]),
    /// Real values.
    Values(&'a [f32]),
}

impl TargetsView<'_> {
    /// The number of targets.
    pub fn len(&self) -> usize {
        match self {
            TargetsView::Classes(c) => c.len(),
            TargetsView::Values(v) => v.len(),
        }
    }

    /// True when there are no targets.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The targets `pick` finds in each part, one part after another.
fn joined<T: Copy>(parts: &[Dataset], pick: impl Fn(&Targets) -> &[T]) -> Vec<T> {
    parts.iter().flat_map(|p| pick(&p.y)).copied().collect()
}

fn slice_targets(y: &Targets, start: usize, end: usize) -> Targets {
    match y {
        Targets::Classes(c) => Targets::Classes(c[start..end].to_vec()),
        Targets::Values(v) => Targets::Values(v[start..end].to_vec()),
    }
}

/// Index of the largest value; the first one on ties, and 0 when `v[0]` is NaN (NaN never
/// compares greater, nor does anything compare greater than it). Written without a branch on
/// the comparison: labels are as good as random, so a branch would be mispredicted on most
/// rows.
pub(crate) fn argmax(v: &[f32]) -> usize {
    let (mut best, mut top) = (0, v.first().copied().unwrap_or(f32::NAN));
    for (i, &x) in v.iter().enumerate() {
        let better = x > top;
        best = if better { i } else { best };
        top = if better { x } else { top };
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_largest_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 2.0, 3.0]), 1);
        assert_eq!(argmax(&[1.0, f32::NAN, 2.0]), 2);
        assert_eq!(argmax(&[f32::NAN, 5.0, 7.0]), 0);
        assert_eq!(argmax(&[-0.0, 0.0]), 0);
        assert_eq!(argmax(&[f32::NEG_INFINITY, -1.0]), 1);
        assert_eq!(argmax(&[]), 0);
    }
}
