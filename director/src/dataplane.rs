//! The packet path of one director, from frame in to frame out (lands next).
