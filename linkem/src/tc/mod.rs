//! Traffic control: the impairment model and the qdisc trees that carry it.

pub mod impairment;
