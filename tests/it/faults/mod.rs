//! Faithful under faults: clients recover from lost and damaged messages, the server gives up
//! as documented, dropped-out clients are silent, links are FIFO, overlapping faults compose,
//! faults wait for clients that have not joined, and nothing follows `run_end`.

mod classes;
mod invariants;
mod props;
