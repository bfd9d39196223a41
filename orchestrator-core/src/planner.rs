//! The layer planner: current vs desired deployment -> hierarchy checks and ordered waves of actions.
