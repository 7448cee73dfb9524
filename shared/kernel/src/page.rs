//! One page of a listing that continues: the items and where the next page starts.

/// A page of `T`s; `next` is where the following page starts (`None`: this was the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next: Option<C>,
}
