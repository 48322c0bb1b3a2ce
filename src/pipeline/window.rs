//! Which tokens the model sees when it predicts which token: the window schedule both sides follow.
//!
//! A chunk's tokens are coded in windows. The engine's attention cost and KV cache grow with the number of
//! positions, so a window holds at most `context` positions; a window that started cold (no text before it)
//! would waste bits on its first tokens, so every window after the first starts with the last `overlap`
//! tokens already coded, given to the engine as context only.
//!
//! ```text
//! tokens:      t0 t1 t2 ... t(a-1) | ta ...          t(b-1) | tb ...
//! window 0:    [START] t0 .. t(a-2)            codes t0 .. t(a-1)      (a = context tokens)
//! window 1:    t(a-K) .. t(a-1) ta .. t(b-2)   codes ta .. t(b-1)      (b - a = context - K + 1 tokens)
//! ```
//!
//! The row of logits at input position `p` predicts the token at input position `p + 1`, so a window's
//! engine input is its context followed by every coded token but the last; `context + coded - 1` positions,
//! never more than `context`. With `overlap == 0` every window is cold and starts from the start token.
//!
//! This module is pure arithmetic so that encoder and decoder cannot disagree: both iterate the same
//! [`Schedule`].
//!
//! The sliding schedule ([`Sliding`], format version 2) replaces windows by one KV cache per chunk that
//! never restarts: the engine input is the start token followed by every token but the last, and
//! whenever the cache holds `context` positions and another must be added, the engine drops the
//! `slide` positions after the first `sink` (re-rotating the keys it keeps, see `Model::slide`). Every
//! token then sees at least `context - slide` positions before it, where a window restarts with
//! `overlap`; and no position is computed twice.

use std::ops::Range;

/// One window of the schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Token indices given to the engine as context before the first coded token. Empty for a window that
    /// starts from the start token (window 0, or every window when the overlap is 0).
    pub context: Range<usize>,
    /// Token indices coded in this window.
    pub coded: Range<usize>,
}

impl Window {
    /// Whether the engine input begins with the start token instead of earlier text.
    pub fn starts_cold(&self) -> bool {
        self.context.is_empty()
    }

    /// Number of context positions the engine processes before the first coded token is predicted
    /// (the start token counts as one).
    pub fn context_len(&self) -> usize {
        if self.starts_cold() { 1 } else { self.context.len() }
    }

    /// The engine input that precedes the first coded token: the start token for a cold window, else the
    /// carried-over tokens. The decoder has exactly these tokens when the window begins.
    pub fn context_tokens<'t>(&self, tokens: &'t [u32], start_token: &'t [u32; 1]) -> &'t [u32] {
        if self.starts_cold() { start_token } else { &tokens[self.context.clone()] }
    }

    /// Number of engine positions this window occupies.
    pub fn positions(&self) -> usize {
        self.context_len() + self.coded.len() - 1
    }
}

/// The windows covering `total` tokens with at most `context` positions each and `overlap` tokens of
/// carried-over context.
///
/// Invariants (checked by [`Schedule::new`]): `2 <= context` and `overlap < context`, so every window codes
/// at least two tokens and the schedule always advances.
#[derive(Clone, Debug)]
pub struct Schedule {
    total: usize,
    context: usize,
    overlap: usize,
    next: usize,
}

/// Why settings cannot form a schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "context {context} with overlap {overlap} leaves no room to code tokens; need context >= 2 and overlap < context"
    )]
    Windows { context: usize, overlap: usize },
    #[error(
        "context {context} with slide {slide} and sink {sink} cannot slide; need context >= 2, sink 0 or 1 and 1 <= slide <= context - sink"
    )]
    Sliding { context: usize, slide: usize, sink: usize },
}

/// The sliding schedule of one chunk: a cache of `context` positions that drops `slide` positions after
/// the first `sink` each time it is full.
///
/// Invariants (checked by [`Sliding::new`]): `2 <= context`, `sink <= 1`, `1 <= slide <= context - sink`,
/// so a slide always frees room and never drops the sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sliding {
    pub context: usize,
    pub slide: usize,
    pub sink: usize,
}

impl Sliding {
    pub fn new(context: usize, slide: usize, sink: usize) -> Result<Self, ScheduleError> {
        if context < 2 || sink > 1 || slide == 0 || slide > context - sink {
            return Err(ScheduleError::Sliding { context, slide, sink });
        }
        Ok(Self { context, slide, sink })
    }

    /// Positions that may be added to a cache of `len` positions before it must slide (0: slide now).
    pub fn room(&self, len: usize) -> usize {
        self.context - len
    }

    /// Slides a chunk of `tokens` tokens goes through: the engine input has `tokens` positions (the start
    /// token and all tokens but the last), and the first slide comes when position `context` is added.
    pub fn slides(&self, tokens: usize) -> usize {
        if tokens <= self.context { 0 } else { (tokens - self.context).div_ceil(self.slide) }
    }
}

impl Schedule {
    pub fn new(total: usize, context: usize, overlap: usize) -> Result<Self, ScheduleError> {
        if context < 2 || overlap >= context {
            return Err(ScheduleError::Windows { context, overlap });
        }
        Ok(Self { total, context, overlap, next: 0 })
    }
}

impl Iterator for Schedule {
    type Item = Window;

    fn next(&mut self) -> Option<Window> {
        let start = self.next;
        if start >= self.total {
            return None;
        }
        let (context, room) = if start == 0 || self.overlap == 0 {
            // Cold: the start token takes one position.
            (start..start, self.context)
        } else {
            (start - self.overlap..start, self.context - self.overlap + 1)
        };
        let end = (start + room).min(self.total);
        self.next = end;
        Some(Window { context, coded: start..end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(total: usize, n: usize, k: usize) -> Vec<Window> {
        Schedule::new(total, n, k).unwrap().collect()
    }

    #[test]
    fn covers_every_token_once_and_respects_the_position_limit() {
        for &(total, n, k) in
            &[(0, 8, 2), (1, 8, 2), (7, 8, 2), (8, 8, 2), (100, 8, 2), (100, 8, 0), (5000, 2048, 256)]
        {
            let ws = windows(total, n, k);
            let mut next = 0;
            for (i, w) in ws.iter().enumerate() {
                assert_eq!(w.coded.start, next);
                assert!(!w.coded.is_empty());
                assert!(w.positions() <= n, "window {i} of {total}/{n}/{k} uses {} positions", w.positions());
                if i > 0 && k > 0 {
                    assert_eq!(w.context, w.coded.start - k..w.coded.start);
                } else {
                    assert!(w.starts_cold());
                }
                next = w.coded.end;
            }
            assert_eq!(next, total);
        }
    }

    #[test]
    fn full_windows_use_every_position() {
        let ws = windows(10_000, 2048, 256);
        assert_eq!(ws[0].coded, 0..2048);
        assert_eq!(ws[0].positions(), 2048);
        assert_eq!(ws[1].context, 2048 - 256..2048);
        assert_eq!(ws[1].coded, 2048..2048 + 1793);
        assert_eq!(ws[1].positions(), 2048);
    }

    #[test]
    fn rejects_schedules_that_cannot_advance() {
        assert!(Schedule::new(10, 1, 0).is_err());
        assert!(Schedule::new(10, 8, 8).is_err());
        assert!(Schedule::new(10, 8, 7).is_ok());
    }

    #[test]
    fn a_slide_always_frees_room_and_keeps_the_sink() {
        assert!(Sliding::new(8, 0, 1).is_err());
        assert!(Sliding::new(8, 8, 1).is_err());
        assert!(Sliding::new(8, 7, 1).is_ok());
        assert!(Sliding::new(8, 8, 0).is_ok());
        assert!(Sliding::new(8, 2, 2).is_err());
        assert!(Sliding::new(1, 1, 0).is_err());
        let s = Sliding::new(8, 3, 1).unwrap();
        assert_eq!((s.room(5), s.room(8)), (3, 0));
        // 8 positions fill the cache; positions 9..=11 need one slide, 12..=14 a second.
        assert_eq!((s.slides(8), s.slides(9), s.slides(11), s.slides(12)), (0, 1, 1, 2));
    }
}
