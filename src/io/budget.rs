//! The shard's buffer budget: bytes held on behalf of slow peers (request
//! bodies read before an upstream connection is taken, responses read
//! ahead of a slow client), over all of a shard's connections together
//! (`server.buffer_budget_mb`). Buffering beyond one relay chunk happens
//! only while the budget lasts, so memory stays bounded however many clients
//! are slow at once.

use std::cell::Cell;
use std::rc::Rc;

/// Bytes the shard may still hold; shared by every connection on it.
pub type Budget = Rc<Cell<usize>>;

/// Bytes charged to the budget, given back however the holder ends.
#[derive(Debug)]
pub struct Charge {
    budget: Budget,
    /// Bytes held now.
    held: usize,
    /// The part of `held` taken from the budget (less when it ran dry).
    taken: usize,
}

impl Charge {
    pub fn new(budget: &Budget) -> Charge {
        Charge {
            budget: budget.clone(),
            held: 0,
            taken: 0,
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Whether the budget has room for `n` more bytes.
    pub fn room_for(&self, n: usize) -> bool {
        self.budget.get() >= n
    }

    pub fn add(&mut self, n: usize) {
        let take = n.min(self.budget.get());
        self.budget.set(self.budget.get() - take);
        self.taken += take;
        self.held += n;
    }

    pub fn release(&mut self, n: usize) {
        self.held -= n.min(self.held);
        let back = self.taken.saturating_sub(self.held);
        self.taken -= back;
        self.budget.set(self.budget.get() + back);
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.release(self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_charge_gives_back_what_it_held_however_it_ends() {
        let budget: Budget = Rc::new(Cell::new(100));
        {
            let mut charge = Charge::new(&budget);
            charge.add(60);
            assert_eq!(budget.get(), 40);
            charge.release(10);
            assert_eq!((budget.get(), charge.held()), (50, 50));
            charge.add(80); // over budget: the shard's figure stops at zero
            assert_eq!((budget.get(), charge.held()), (0, 130));
            assert!(!charge.room_for(1));
            charge.release(100);
            assert_eq!((budget.get(), charge.held()), (70, 30));
        }
        assert_eq!(budget.get(), 100, "dropped: the budget is whole again");
    }
}
