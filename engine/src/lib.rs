//! secretchat engine.
