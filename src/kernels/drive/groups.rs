//! The driver of the per-group losses ([`crate::groups`]): binary cross-entropy per
//! element, softmax cross-entropy per row, and log loss per sample, each folded into a
//! per-group state. Each reuses its family's driver for the operands' checks and layout, and
//! adds the codes, checked against the elements, rows or samples they label.

use super::{bce, execute, logloss, softmax, Detach};
use crate::float::{Float, Target};
use crate::groups::{self, CodeType, Codes, GroupSums, RowCodes};
use crate::reduce::Partial;
use crate::rows::{RowOp, Rows};
use crate::softmax::Label;
use crate::strided::{Layout, Load, Stored};
use crate::view::{ShapeError, View};

/// The codes a call is grouped by (any integer type, read where they lie), and the bound
/// every code must stay below (`n_groups`, or [`groups::MAX_GROUPS`] when the state grows with
/// the codes seen). A code outside `[0, limit)` raises [`groups::flags::GROUPS`].
pub struct Grouping<'a, C> {
    pub codes: View<'a, C>,
    pub limit: u64,
}

impl<C: CodeType + Load> Grouping<'_, C> {
    /// The codes as the kernels read them.
    fn codes(&self) -> Codes {
        debug_assert!(self.codes.src().stored() == Stored::Native);
        Codes::new(self.codes.src().raw())
    }
}

/// Binary cross-entropy per group ([`groups::binary_cross_entropy`]): the shapes of
/// [`bce::loss`], and one code per element (`groups` broadcast to the input's shape), folded
/// into `state` and `args.init` (with sample weights, `state` is made weighted
/// ([`GroupSums::set_weighted`]) and each group's weight is its `Σ sw`), under the NaN policy
/// `args.nan`. Returns the total (its `flags` also carry the per-group errors, see
/// [`groups::flags`]).
pub fn binary_cross_entropy<T: Float, Y: Target + Load, C: CodeType + Load, D: Detach>(
    state: &mut GroupSums,
    args: &bce::Loss<'_, T, Y>,
    grouping: &Grouping<'_, C>,
    detach: &D,
) -> Result<Partial, D::Error> {
    let reject = |e| detach.reject(e);
    let (inputs, [ws, pws]) = args.operands.prepare().map_err(reject)?;
    let (sample_weight, sws) = args.operands.sample_weights().map_err(reject)?;
    let (xs, ys) = args.operands.strides();
    let shape = args.operands.input.shape();
    let gs = grouping
        .codes
        .broadcast_strides(shape, "groups")
        .map_err(|_| {
            reject(ShapeError::GroupsElements {
                input: shape.to_vec(),
                got: grouping.codes.shape().to_vec(),
            })
        })?;
    let layout = Layout::new(shape, [xs, ys, &ws, &pws, &gs, &sws]);
    let codes = grouping.codes();
    let (kind, init, nan, limit) = (args.kind, args.init, args.nan, grouping.limit);
    if sample_weight.is_some() {
        // Each group's mean divides by its sample-weight sum.
        state.set_weighted();
    }
    execute(detach, layout.len(), move |pool| {
        // SAFETY: every pointer comes from a view, valid along its own shape and strides for
        // the call (`View::new`'s contract), broadcast here to the input's shape, from which
        // the layout is built; nothing is written but `state`.
        unsafe {
            groups::binary_cross_entropy(
                state,
                init,
                &inputs,
                sample_weight,
                codes,
                &layout,
                kind,
                nan,
                limit,
                pool,
            )
        }
    })
}

/// The grouped run of a call's rows: each row's loss into the group of its code.
struct Grouped<'s, 'd, D> {
    state: &'s mut GroupSums,
    init: Partial,
    codes: RowCodes,
    limit: u64,
    detach: &'d D,
}

impl<D: Detach> softmax::RunRows for Grouped<'_, '_, D> {
    type Output = Result<Partial, D::Error>;
    fn run<O: RowOp<5>>(self, n: usize, rows: &Rows<5>, op: &O) -> Self::Output {
        let Grouped {
            state,
            init,
            codes,
            limit,
            detach,
        } = self;
        execute(detach, n, |pool| {
            // SAFETY: `op`'s operands and the codes (operand 3) are valid along `rows`
            // (`RunRows`' contract, and the caller of `with_rows`).
            unsafe { groups::rows(state, init, rows, op, codes, limit, pool) }
        })
    }
}

/// Softmax cross-entropy per group ([`groups::rows`] over the rows of [`softmax::loss`]): the
/// shapes of the plain call, and one code per row (the logits' shape without the class axis),
/// checked after the class weights and before the target. Folded into `state` and
/// `args.init`, the mean's denominator of each group in its `weight`.
pub fn softmax_cross_entropy<T: Float, L: Label + Load, C: CodeType + Load, D: Detach>(
    state: &mut GroupSums,
    args: &softmax::Loss<'_, T, L>,
    grouping: &Grouping<'_, C>,
    detach: &D,
) -> Result<Partial, D::Error> {
    let reject = |e| detach.reject(e);
    let p = args.prepare().map_err(reject)?;
    let codes = &grouping.codes;
    if codes.shape() != &p.reduced.kept[..] {
        return Err(reject(ShapeError::GroupsRows {
            logits: args.logits.shape().to_vec(),
            axis: p.axis,
            rows: p.reduced.kept.to_vec(),
            got: codes.shape().to_vec(),
        }));
    }
    let c_strides = p.reduced.widen(codes.strides());
    // SAFETY: operand 3 of the rows `with_rows` builds (one code per row, stride 0 along the
    // class axis), from the codes' own view, valid for the call.
    let row_codes = unsafe { RowCodes::operand(grouping.codes(), 3) };
    let run = Grouped {
        state,
        init: args.init,
        codes: row_codes,
        limit: grouping.limit,
        detach,
    };
    // SAFETY: operand 3 is the codes' view, widened with stride 0 along the class axis.
    unsafe { args.with_rows(&p, &c_strides, None, run) }.map_err(reject)?
}

/// Log loss per group ([`groups::rows`] over the rows of [`logloss::log_loss`]): the shapes of
/// the plain call, and one code per sample, checked after `y_true` and before the sample
/// weights. Folded into `state` and `args.init`, each group's weight sum in its `weight`.
pub fn log_loss<T: Float, L: Label + Load, C: CodeType + Load, D: Detach>(
    state: &mut GroupSums,
    args: &logloss::Call<'_, T, L>,
    grouping: &Grouping<'_, C>,
    detach: &D,
) -> Result<Partial, D::Error> {
    let reject = |e| detach.reject(e);
    let s = args.samples().map_err(reject)?;
    let codes = &grouping.codes;
    if codes.shape() != [s.n] {
        return Err(reject(ShapeError::GroupsSamples {
            n: s.n,
            got: codes.shape().to_vec(),
        }));
    }
    let (op, rows) = args.rows(&s).map_err(reject)?;
    // SAFETY: the rows have one outer dimension (the n samples, in order), and the codes' view
    // holds n valid codes with this stride for the call.
    let by_row = unsafe { RowCodes::by_row(grouping.codes(), codes.strides()[0]) };
    let (init, limit) = (args.init, grouping.limit);
    execute(detach, s.elements(), |pool| {
        // SAFETY: `op`'s operands are valid along `rows` (built by the plain driver), the
        // codes as above; the op only reads.
        unsafe { groups::rows(state, init, &rows, &op, by_row, limit, pool) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bce::Kind;
    use crate::drive::Serial;
    use crate::float::Bool;
    use crate::groups::{flags as gflags, MAX_GROUPS};

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    fn state() -> GroupSums {
        GroupSums::new(0, true).unwrap()
    }

    #[test]
    fn bce_sums_each_element_into_its_group_and_checks_the_codes_shape() {
        let p = [0.9, 0.2, 0.6, 0.3];
        let y = [Bool(1), Bool(0), Bool(1), Bool(1)];
        let call = bce::Loss {
            kind: Kind::Probabilities,
            init: Partial::EMPTY,
            nan: crate::nan::NanPolicy::Propagate,
            operands: bce::Binary {
                input: View::from_slice(&p),
                target: View::from_slice(&y),
                weight: None,
                pos_weight: None,
                sample_weight: None,
            },
        };
        let codes = [1u16, 0, 1, 2];
        let grouping = Grouping {
            codes: View::from_slice(&codes),
            limit: MAX_GROUPS,
        };
        let mut s = GroupSums::new(0, false).unwrap();
        let part = binary_cross_entropy(&mut s, &call, &grouping, &Serial).unwrap();
        let l = [-0.9f64.ln(), -0.8f64.ln(), -0.6f64.ln(), -0.3f64.ln()];
        assert_eq!(s.count, [1, 2, 1]);
        for (got, want) in s.sum.iter().zip([l[1], l[0] + l[2], l[3]]) {
            assert!(close(*got, want), "{got} vs {want}");
        }
        assert!(close(part.sum, l.iter().sum()));
        assert_eq!(part.count, 4);

        let short = [0i64, 1];
        let grouping = Grouping {
            codes: View::from_slice(&short),
            limit: MAX_GROUPS,
        };
        let e = binary_cross_entropy(&mut state(), &call, &grouping, &Serial).unwrap_err();
        assert_eq!(
            e.to_string(),
            "'groups' must have the shape of 'input' (4,) (one code per element) or broadcast \
             to it, got (2,)"
        );
    }

    #[test]
    fn bce_omit_leaves_each_nan_element_out_of_its_group() {
        // Enough elements for several tiles; NaN inputs and weights here and there, a whole
        // group (2) of NaN inputs, and one NaN whose code is the largest (group 4 exists).
        let n = 3000;
        let mut p: Vec<f64> = (0..n)
            .map(|i| 0.05 + 0.9 * ((i * 37 % 101) as f64 / 101.0))
            .collect();
        let y: Vec<Bool> = (0..n).map(|i| Bool(u8::from(i % 3 == 0))).collect();
        let mut w: Vec<f64> = (0..n).map(|i| 0.5 + (i % 7) as f64 / 7.0).collect();
        let mut codes: Vec<u8> = (0..n).map(|i| (i * 13 % 4) as u8).collect();
        for i in (0..n).step_by(17) {
            p[i] = f64::NAN;
        }
        for i in (5..n).step_by(29) {
            w[i] = f64::NAN;
        }
        for i in 0..n {
            if codes[i] == 2 {
                p[i] = f64::NAN;
            }
        }
        codes[n - 1] = 4;
        p[n - 1] = f64::NAN;
        let call = bce::Loss {
            kind: Kind::Probabilities,
            init: Partial::EMPTY,
            nan: crate::nan::NanPolicy::Omit,
            operands: bce::Binary {
                input: View::from_slice(&p),
                target: View::from_slice(&y),
                weight: Some(View::from_slice(&w)),
                pos_weight: None,
                sample_weight: None,
            },
        };
        let grouping = Grouping {
            codes: View::from_slice(&codes),
            limit: MAX_GROUPS,
        };
        let mut s = GroupSums::new(0, false).unwrap();
        let part = binary_cross_entropy(&mut s, &call, &grouping, &Serial).unwrap();
        // Each group: the sequential sum of its kept elements' losses, and their count.
        let (mut sum, mut count) = (vec![0f64; 5], vec![0u64; 5]);
        for i in 0..n {
            if p[i].is_nan() || w[i].is_nan() {
                continue;
            }
            let l = if y[i].0 == 1 {
                -p[i].ln()
            } else {
                -(1.0 - p[i]).ln()
            };
            sum[codes[i] as usize] += w[i] * l;
            count[codes[i] as usize] += 1;
        }
        assert_eq!(s.count, count);
        assert_eq!((s.count[2], s.count[4]), (0, 0));
        for (got, want) in s.sum.iter().zip(&sum) {
            assert!(close(*got, *want), "{got} vs {want}");
        }
        // The total: the ungrouped "omit" call's count.
        assert_eq!(part.count, count.iter().sum::<u64>());
        assert!(close(part.sum, sum.iter().sum()));
    }

    #[test]
    fn softmax_sums_each_row_into_its_group_and_flags_codes_out_of_range() {
        // 3 rows of 2 classes (C order), one label and one code per row.
        let x = [1.0, 2.0, 0.5, -0.5, 3.0, 0.0];
        // SAFETY: 6 elements in C order for shape (3, 2).
        let xv = unsafe { View::<f64>::new(x.as_ptr(), &[3, 2], &[2, 1]) };
        let labels = [1i64, 0, 0];
        let call = softmax::Loss {
            logits: xv,
            target: softmax::Target::<f64, i64>::Labels(View::from_slice(&labels)),
            weight: None,
            sample_weight: None,
            params: softmax::Params {
                axis: -1,
                ignore_index: -100,
                smoothing: 0.0,
            },
            init: Partial::EMPTY,
            nan: crate::nan::NanPolicy::Propagate,
        };
        let row = |a: f64, b: f64, y: usize| {
            let lse = a.max(b) + ((a - a.max(b)).exp() + (b - a.max(b)).exp()).ln();
            lse - [a, b][y]
        };
        let l = [row(1.0, 2.0, 1), row(0.5, -0.5, 0), row(3.0, 0.0, 0)];
        let codes = [0i8, 1, 0];
        let grouping = Grouping {
            codes: View::from_slice(&codes),
            limit: 2,
        };
        let mut s = state();
        softmax_cross_entropy(&mut s, &call, &grouping, &Serial).unwrap();
        assert_eq!(s.count, [2, 1]);
        assert!(close(s.sum[0], l[0] + l[2]) && close(s.sum[1], l[1]));
        assert_eq!(s.weight, [2.0, 1.0]);

        let over = [0i8, 2, 0];
        let grouping = Grouping {
            codes: View::from_slice(&over),
            limit: 2,
        };
        let part = softmax_cross_entropy(&mut state(), &call, &grouping, &Serial).unwrap();
        assert_ne!(part.flags & gflags::GROUPS, 0);

        let per_class = [0u8, 1];
        let grouping = Grouping {
            codes: View::from_slice(&per_class),
            limit: 2,
        };
        let e = softmax_cross_entropy(&mut state(), &call, &grouping, &Serial).unwrap_err();
        assert_eq!(
            e.to_string(),
            "'groups' must have the shape of the rows ('logits' (3, 2) without axis 1), (3,) \
             (one code per row), got (2,)"
        );
    }

    #[test]
    fn log_loss_sums_each_sample_into_its_group() {
        let p = [0.8, 0.2, 0.3, 0.7, 0.4, 0.6];
        // SAFETY: 6 elements in C order for shape (3, 2).
        let pv = unsafe { View::<f64>::new(p.as_ptr(), &[3, 2], &[2, 1]) };
        let labels = [0i32, 1, 0];
        let call = logloss::Call {
            probs: pv,
            codes: View::from_slice(&labels),
            weights: None,
            classes: 2,
            eps: f64::EPSILON,
            init: Partial::EMPTY,
        };
        let codes = [1u64, 1, 0];
        let grouping = Grouping {
            codes: View::from_slice(&codes),
            limit: MAX_GROUPS,
        };
        let mut s = state();
        log_loss(&mut s, &call, &grouping, &Serial).unwrap();
        assert_eq!(s.count, [1, 2]);
        assert!(close(s.sum[0], -0.4f64.ln()));
        assert!(close(s.sum[1], -0.8f64.ln() - 0.7f64.ln()));

        let short = [0u32; 2];
        let grouping = Grouping {
            codes: View::from_slice(&short),
            limit: MAX_GROUPS,
        };
        let e = log_loss(&mut state(), &call, &grouping, &Serial).unwrap_err();
        assert_eq!(
            e.to_string(),
            "'groups' must hold one code per row of 'y_pred' (shape (3,)), got shape (2,)"
        );
    }
}
