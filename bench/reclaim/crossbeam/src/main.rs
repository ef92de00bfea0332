//! single-cell-crossbeam: the crossbeam-epoch side of the single-cell comparison.
//!
//! The workload, identical to bench/reclaim/single_cell.cpp (kovan-single-cell):
//!   * one shared cell holds a pointer to a node {value, magic};
//!   * a writer allocates a fresh node, pins, swaps it into the cell and retires the old one
//!     (`defer_destroy`), then unpins;
//!   * a reader pins, loads the cell, checks the node's magic, adds its value, unpins.
//!
//! Two modes:
//!   timed  (default)    W writers and R readers for S seconds; write and read rates
//!   --stall-ops N       one thread pins a guard and holds it while W writers do N swaps in
//!                       all; unreclaimed = nodes retired - nodes dropped, counted after the
//!                       writers have finished and exited, with the guard still held
//!
//! One CSV line per run (the same columns as kovan-single-cell; `--header` prints them):
//!   impl,config,writers,readers,stall_ops,seconds,writes,reads,writes_per_s,reads_per_s,
//!   unreclaimed,errors,vm_hwm_kb
//! (vm_hwm_kb: the process's peak resident set, VmHWM in /proc/self/status, at the end.)
use std::cell::Cell;
use std::process::exit;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_epoch::{self as epoch, Atomic, Owned};

const ALIVE: u32 = 0xA11CE;
const DEAD: u32 = 0xDEAD;

// Drops counted per thread (no shared cache line on the hot path) and added to the total
// when the thread exits; a drop that runs after this thread's counter is gone (crossbeam's
// own thread-exit work) goes straight to the total.
static DROPPED_TOTAL: AtomicU64 = AtomicU64::new(0);
// The readers' sums, so that their reads are not optimized away.
static SINK: AtomicU64 = AtomicU64::new(0);

struct DropCount(Cell<u64>);

impl Drop for DropCount {
    fn drop(&mut self) {
        DROPPED_TOTAL.fetch_add(self.0.get(), Ordering::Relaxed);
    }
}

thread_local! {
    static DROPPED: DropCount = const { DropCount(Cell::new(0)) };
}

fn count_drop() {
    if DROPPED.try_with(|c| c.0.set(c.0.get() + 1)).is_err() {
        DROPPED_TOTAL.fetch_add(1, Ordering::Relaxed);
    }
}

// Registers the calling thread's counter first, so that it is destroyed after crossbeam's
// thread-local handle (thread-local destructors run in reverse order of registration).
fn attach_counter() {
    DROPPED.with(|c| c.0.set(c.0.get()));
}

struct Node {
    value: u64,
    // Atomic so that the store in drop is not removed as a dead store.
    magic: AtomicU32,
}

impl Node {
    fn new(value: u64) -> Self {
        Node {
            value,
            magic: AtomicU32::new(ALIVE),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.magic.store(DEAD, Ordering::Relaxed);
        count_drop();
    }
}

struct Config {
    name: String,
    writers: usize,
    readers: usize,
    seconds: f64,
    stall_ops: u64,
    header: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: single-cell-crossbeam [--config NAME] [--writers W] [--readers R] [--seconds S]\n\
         \x20                            [--stall-ops N] [--header]"
    );
    exit(2);
}

fn parse_args() -> Config {
    let mut c = Config {
        name: "run".into(),
        writers: 2,
        readers: 0,
        seconds: 1.0,
        stall_ops: 0,
        header: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--header" {
            c.header = true;
            i += 1;
            continue;
        }
        let v = match args.get(i + 1) {
            Some(v) => v.as_str(),
            None => usage(),
        };
        match a {
            "--config" => c.name = v.to_string(),
            "--writers" => c.writers = v.parse().unwrap_or_else(|_| usage()),
            "--readers" => c.readers = v.parse().unwrap_or_else(|_| usage()),
            "--seconds" => c.seconds = v.parse().unwrap_or_else(|_| usage()),
            "--stall-ops" => c.stall_ops = v.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
        i += 2;
    }
    if c.writers == 0 || c.seconds <= 0.0 {
        usage();
    }
    c
}

// One write: a fresh node, allocated before the pin (as the kovan side does).
fn write_once(cell: &Atomic<Node>, value: u64) {
    let fresh = Owned::new(Node::new(value));
    let guard = epoch::pin();
    let old = cell.swap(fresh, Ordering::AcqRel, &guard);
    // SAFETY: `old` was unlinked by this swap, so only guards pinned before it can reach it.
    unsafe { guard.defer_destroy(old) };
}

// One read; returns whether the node was alive.
fn read_once(cell: &Atomic<Node>, sink: &mut u64) -> bool {
    let guard = epoch::pin();
    let p = cell.load(Ordering::Acquire, &guard);
    // SAFETY: the cell never holds null, and `p` is protected by `guard`.
    let n = unsafe { p.deref() };
    *sink = sink.wrapping_add(n.value);
    n.magic.load(Ordering::Relaxed) == ALIVE
}

struct Totals {
    writes: u64,
    reads: u64,
    errors: u64,
    seconds: f64,
    unreclaimed: u64,
}

fn run_timed(c: &Config, cell: &Atomic<Node>) -> Totals {
    let stop = AtomicBool::new(false);
    let start = Barrier::new(c.writers + c.readers + 1);
    let mut t = Totals {
        writes: 0,
        reads: 0,
        errors: 0,
        seconds: 0.0,
        unreclaimed: 0,
    };
    thread::scope(|s| {
        let mut writers = Vec::new();
        let mut readers = Vec::new();
        for w in 0..c.writers {
            let (stop, start) = (&stop, &start);
            writers.push(s.spawn(move || {
                attach_counter();
                start.wait();
                let mut ops = 0u64;
                // Relaxed: the flag only ends the loop; join orders the results.
                while !stop.load(Ordering::Relaxed) {
                    write_once(cell, ((w as u64) << 48) | ops);
                    ops += 1;
                }
                ops
            }));
        }
        for _ in 0..c.readers {
            let (stop, start) = (&stop, &start);
            readers.push(s.spawn(move || {
                attach_counter();
                start.wait();
                let (mut ops, mut errors, mut sink) = (0u64, 0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    if !read_once(cell, &mut sink) {
                        errors += 1;
                    }
                    ops += 1;
                }
                // Keeps the reads observable (std::hint::black_box needs Rust 1.66).
                SINK.fetch_add(sink, Ordering::Relaxed);
                (ops, errors)
            }));
        }
        start.wait();
        let t0 = Instant::now();
        thread::sleep(Duration::from_secs_f64(c.seconds));
        stop.store(true, Ordering::Relaxed);
        t.seconds = t0.elapsed().as_secs_f64();
        for h in writers {
            t.writes += h.join().expect("writer panicked");
        }
        for h in readers {
            let (ops, errors) = h.join().expect("reader panicked");
            t.reads += ops;
            t.errors += errors;
        }
    });
    t
}

fn run_stalled(c: &Config, cell: &Atomic<Node>) -> Totals {
    let held = Barrier::new(2);
    let release = Barrier::new(2);
    let mut t = Totals {
        writes: 0,
        reads: 0,
        errors: 0,
        seconds: 0.0,
        unreclaimed: 0,
    };
    thread::scope(|s| {
        let (held, release) = (&held, &release);
        let staller = s.spawn(move || {
            attach_counter();
            let guard = epoch::pin();
            let p = cell.load(Ordering::Acquire, &guard);
            // SAFETY: protected by `guard`, which is held until `release`.
            let alive = unsafe { p.deref() }.magic.load(Ordering::Relaxed) == ALIVE;
            held.wait();
            release.wait();
            drop(guard);
            alive
        });
        held.wait(); // the guard is pinned before any writer starts
        let dropped0 = DROPPED_TOTAL.load(Ordering::Relaxed);
        let t0 = Instant::now();
        let per = c.stall_ops / c.writers as u64;
        let extra = c.stall_ops % c.writers as u64;
        let mut writers = Vec::new();
        for w in 0..c.writers {
            let n = per + u64::from((w as u64) < extra);
            writers.push(s.spawn(move || {
                attach_counter();
                for i in 0..n {
                    write_once(cell, ((w as u64) << 48) | i);
                }
                n
            }));
        }
        for h in writers {
            t.writes += h.join().expect("writer panicked");
        }
        t.seconds = t0.elapsed().as_secs_f64();
        // The writers have exited: their drop counts are in the total.
        let dropped = DROPPED_TOTAL.load(Ordering::Relaxed) - dropped0;
        t.unreclaimed = t.writes.saturating_sub(dropped);
        release.wait();
        if !staller.join().expect("staller panicked") {
            t.errors += 1;
        }
    });
    t
}

// Peak resident set in KiB (0 where /proc is unavailable).
fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    let c = parse_args();
    attach_counter();
    let cell = Atomic::new(Node::new(0));
    let t = if c.stall_ops > 0 {
        run_stalled(&c, &cell)
    } else {
        run_timed(&c, &cell)
    };
    if c.header {
        println!(
            "impl,config,writers,readers,stall_ops,seconds,writes,reads,writes_per_s,\
             reads_per_s,unreclaimed,errors,vm_hwm_kb"
        );
    }
    println!(
        "crossbeam,{},{},{},{},{:.3},{},{},{:.0},{:.0},{},{},{}",
        c.name,
        c.writers,
        if c.stall_ops > 0 { 0 } else { c.readers },
        c.stall_ops,
        t.seconds,
        t.writes,
        t.reads,
        t.writes as f64 / t.seconds,
        t.reads as f64 / t.seconds,
        t.unreclaimed,
        t.errors,
        vm_hwm_kb()
    );
    // SAFETY: every thread has joined; the last node is freed here.
    unsafe {
        let g = epoch::unprotected();
        let last = cell.swap(epoch::Shared::null(), Ordering::Relaxed, g);
        drop(last.into_owned());
    }
    if t.errors != 0 {
        eprintln!(
            "single-cell-crossbeam: {} reads saw a dropped node",
            t.errors
        );
        exit(1);
    }
}
