//! netem's loss generators: random loss with correlation (`CLG_RANDOM`), the
//! Gilbert-Elliott model (`loss_gilb_ell`) and the 4-state model (`loss_4state`), as in
//! `net/sched/sch_netem.c` of Linux 6.x, with the probabilities scaled to `u32` exactly
//! as linkem hands them to the kernel (`crate::tc::netem`).

use crate::tc::impairment::{LinkImpairment, LossModel};
use crate::tc::netem::percent;

use super::stream::{Correlated, Stream};

/// The 4-state model's states (netem's `_4_state_model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FourState {
    /// 1: packets received within a gap period.
    TxInGap,
    /// 2: packets received within a burst period.
    TxInBurst,
    /// 3: packets lost within a burst period.
    LostInBurst,
    /// 4: isolated losses within a gap period.
    LostInGap,
}

/// Which loss generator a link runs, with its state.
#[derive(Debug, Clone)]
pub(crate) enum Loss {
    /// `loss` with `loss_correlation` (no draw at all when `loss` is 0).
    Random {
        /// The loss probability, scaled.
        p: u32,
        /// The correlation state.
        cor: Correlated,
    },
    /// netem's `CLG_GILB_ELL`: `a1 = p`, `a2 = r`, `a3 = h` (no loss in the bad state),
    /// `a4 = 1 - k` (loss in the good state).
    GilbertElliott {
        /// Good to bad.
        p: u32,
        /// Bad to good.
        r: u32,
        /// Probability of *no* loss in the bad state.
        h: u32,
        /// Loss in the good state.
        k1: u32,
        /// In the bad state.
        bad: bool,
    },
    /// netem's `CLG_4_STATES`: `a1 = p13`, `a2 = p31`, `a3 = p32`, `a4 = p14`,
    /// `a5 = p23`.
    FourState {
        /// Transition probabilities, scaled: p13, p31, p32, p14, p23.
        a: [u32; 5],
        /// The current state.
        state: FourState,
    },
}

impl Loss {
    /// The generator of an impairment, in its initial state (netem's `get_loss_clg`
    /// starts both models in state 1; `init_crandom` draws the correlation's memory).
    pub(crate) fn new(imp: &LinkImpairment, stream: &mut Stream) -> Self {
        match imp.loss_model {
            None => Loss::Random {
                p: percent(imp.loss),
                cor: Correlated::new(imp.loss_correlation, stream),
            },
            Some(LossModel::GilbertElliott {
                p,
                r,
                bad_loss,
                good_loss,
            }) => Loss::GilbertElliott {
                p: percent(p.get()),
                r: percent(r.get()),
                // As `crate::tc::netem` encodes it: h = 1 - bad_loss.
                h: u32::MAX - percent(bad_loss.get()),
                k1: percent(good_loss.get()),
                bad: false,
            },
            Some(LossModel::FourState {
                p13,
                p31,
                p32,
                p23,
                p14,
            }) => Loss::FourState {
                a: [p13, p31, p32, p14, p23].map(|p| percent(p.get())),
                state: FourState::TxInGap,
            },
        }
    }

    /// Whether this packet is lost (netem's `loss_event`).
    pub(crate) fn lost(&mut self, stream: &mut Stream) -> bool {
        match self {
            Loss::Random { p, cor } => cor.hit(*p, stream),
            Loss::GilbertElliott { p, r, h, k1, bad } => {
                // Two draws per packet: the transition, then the loss in the state the
                // packet arrived in (the new state only counts from the next packet).
                if !*bad {
                    if stream.u32() < *p {
                        *bad = true;
                    }
                    stream.u32() < *k1
                } else {
                    if stream.u32() < *r {
                        *bad = false;
                    }
                    stream.u32() > *h
                }
            }
            Loss::FourState { a, state } => {
                let [a1, a2, a3, a4, a5] = *a;
                let rnd = stream.u32();
                // The comparisons, their strictness and the u32 sums (which wrap, as
                // in C) are netem's: a draw equal to a bound changes nothing.
                match *state {
                    FourState::TxInGap => {
                        if rnd < a4 {
                            *state = FourState::LostInGap;
                            true
                        } else if a4 < rnd && rnd < a1.wrapping_add(a4) {
                            *state = FourState::LostInBurst;
                            true
                        } else {
                            false
                        }
                    }
                    FourState::TxInBurst => {
                        if rnd < a5 {
                            *state = FourState::LostInBurst;
                            true
                        } else {
                            false
                        }
                    }
                    FourState::LostInBurst => {
                        if rnd < a3 {
                            *state = FourState::TxInBurst;
                            false
                        } else if a3 < rnd && rnd < a2.wrapping_add(a3) {
                            *state = FourState::TxInGap;
                            false
                        } else {
                            // Staying in the burst (or a draw on a bound) loses.
                            a2.wrapping_add(a3) < rnd
                        }
                    }
                    FourState::LostInGap => {
                        *state = FourState::TxInGap;
                        false
                    }
                }
            }
        }
    }

    /// Whether this generator can ever lose a packet.
    pub(crate) fn can_lose(&self) -> bool {
        match self {
            Loss::Random { p, .. } => *p != 0,
            Loss::GilbertElliott { h, k1, .. } => *k1 != 0 || *h != u32::MAX,
            Loss::FourState { a, .. } => a[0] != 0 || a[3] != 0,
        }
    }
}
