//! Whole-node tests: real WireGuard sessions between nodes on a simulated network with
//! NATs and TURN relays, driven by a simulated clock (see `sim.rs`).

mod failover;
mod nat;
mod nat_traversal;
mod overlay;
mod relay;
mod reliability;
mod sessions;
mod sim;
mod turn;
