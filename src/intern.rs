//! One shared copy of each value compiled from operator text. Instances written from one
//! template (thousands of them, for a managed-service provider) compile the same date patterns
//! and URL templates; interned, each is held once instead of once per resource.
//!
//! Entries are weak: a value lives while some spec holds it, and dead entries are swept as the
//! table grows, so a reload that drops every instance frees what they compiled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// Below this many entries the table is never swept.
const SWEEP_FLOOR: usize = 1024;

/// A table of interned `T`, keyed by the text they were compiled from.
pub struct Interner<T> {
    table: Mutex<Table<T>>,
}

struct Table<T> {
    by_text: HashMap<String, Weak<T>>,
    /// Sweep when the table reaches this size: twice what was alive after the last sweep.
    sweep_at: usize,
}

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            table: Mutex::new(Table {
                by_text: HashMap::new(),
                sweep_at: SWEEP_FLOOR,
            }),
        }
    }
}

impl<T> Interner<T> {
    /// The live value compiled from `text`, or the one `compile` makes (and interns) when none
    /// is alive. `compile` runs under the table's lock: keep it a pure function of `text`.
    pub fn get_or_compile<E>(
        &self,
        text: &str,
        compile: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(alive) = table.by_text.get(text).and_then(Weak::upgrade) {
            return Ok(alive);
        }
        let value = Arc::new(compile()?);
        table
            .by_text
            .insert(text.to_string(), Arc::downgrade(&value));
        if table.by_text.len() >= table.sweep_at {
            table.by_text.retain(|_, weak| weak.strong_count() > 0);
            table.sweep_at = table.by_text.len().saturating_mul(2).max(SWEEP_FLOOR);
        }
        Ok(value)
    }

    /// Entries in the table, dead ones not yet swept included.
    pub fn len(&self) -> usize {
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table.by_text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_gives_the_same_value_while_it_is_held() {
        let interner: Interner<String> = Interner::default();
        let compile = || Ok::<_, ()>("compiled".to_string());
        let a = interner.get_or_compile("x", compile).unwrap();
        let b = interner.get_or_compile("x", compile).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let other = interner.get_or_compile("y", compile).unwrap();
        assert!(!Arc::ptr_eq(&a, &other));
        drop((a, b));
        // Nobody holds "x" any more: the next one is compiled afresh.
        let mut compiled = false;
        interner
            .get_or_compile("x", || {
                compiled = true;
                Ok::<_, ()>("again".to_string())
            })
            .unwrap();
        assert!(compiled);
    }

    #[test]
    fn errors_are_not_interned() {
        let interner: Interner<String> = Interner::default();
        assert_eq!(interner.get_or_compile("bad", || Err("no")), Err("no"));
        assert!(interner.is_empty());
    }

    #[test]
    fn dead_entries_are_swept_as_the_table_grows() {
        let interner: Interner<usize> = Interner::default();
        let kept: Vec<Arc<usize>> = (0..10)
            .map(|i| {
                interner
                    .get_or_compile(&format!("kept {i}"), || Ok::<_, ()>(i))
                    .unwrap()
            })
            .collect();
        for i in 0..SWEEP_FLOOR * 3 {
            // Dropped at once: dead entries.
            interner
                .get_or_compile(&format!("gone {i}"), || Ok::<_, ()>(i))
                .unwrap();
        }
        assert!(interner.len() <= SWEEP_FLOOR, "{} entries", interner.len());
        for (i, value) in kept.iter().enumerate() {
            let again = interner
                .get_or_compile(&format!("kept {i}"), || Ok::<_, ()>(0))
                .unwrap();
            assert!(Arc::ptr_eq(value, &again));
        }
    }
}
