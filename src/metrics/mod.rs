//! Request metrics. For now: the route templates that give spans (and,
//! later, metric series) a low-cardinality `http.route`.

pub mod route;
