//! Fanning per-process work (an upgrade's suspend, migrate and resume, a scan of the process
//! table) out over a few scoped threads.

/// Lists shorter than this run on the calling thread (a thread start costs more).
const MIN_PARALLEL: usize = 64;

/// Splits `items` into at most `threads` contiguous chunks and runs `f` on each, one scoped
/// thread per chunk (the calling thread takes the first); the results in chunk order.
pub(crate) fn par_chunks<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&[T]) -> R + Sync,
) -> Vec<R> {
    let threads = threads.clamp(1, 16);
    if threads == 1 || items.len() < MIN_PARALLEL {
        return vec![f(items)];
    }
    let chunk = items.len().div_ceil(threads);
    let mut parts = items.chunks(chunk);
    let first = parts.next().unwrap_or_default();
    std::thread::scope(|scope| {
        let others: Vec<_> = parts.map(|part| scope.spawn(|| f(part))).collect();
        let mut results = Vec::with_capacity(others.len() + 1);
        results.push(f(first));
        for handle in others {
            match handle.join() {
                Ok(result) => results.push(result),
                // `f` panicked on that thread: let it surface here as it would have inline.
                Err(payload) => std::panic::resume_unwind(payload),
            }
        }
        results
    })
}

/// Maps `f` over `items` on up to `threads` threads, keeping the order.
pub(crate) fn par_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    par_chunks(items, threads, |part| {
        part.iter().map(&f).collect::<Vec<R>>()
    })
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_item_once_in_order() {
        let items: Vec<u32> = (0..1000).collect();
        for threads in [1, 2, 3, 16, 100] {
            let doubled = par_map(&items, threads, |x| x * 2);
            assert_eq!(doubled, items.iter().map(|x| x * 2).collect::<Vec<_>>());
            let sums = par_chunks(&items, threads, |part| part.len());
            assert_eq!(sums.iter().sum::<usize>(), items.len());
            assert!(sums.len() <= threads.clamp(1, 16));
        }
        assert_eq!(
            par_map(&items[..10], 2, |x| *x),
            (0..10).collect::<Vec<_>>()
        );
    }
}
