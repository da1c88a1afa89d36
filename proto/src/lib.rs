//! placeholder until the proto helper lands
