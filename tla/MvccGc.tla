------------------------------ MODULE MvccGc ------------------------------
(***************************************************************************)
(* The storage engine's commit protocol with interval pruning of version  *)
(* chains, as built: docs/STORAGE.md sections 2-6, storage/src/engine.cpp  *)
(* (txn_commit, validate, gc_view, prune_chain, sweep, expire_txns) and    *)
(* storage/src/snapshots.hpp (CommitClock, SnapshotRegistry).              *)
(*                                                                         *)
(* Clock: `last` is the last commit timestamp handed out, W the largest    *)
(* timestamp such that every timestamp <= W is finished (installed or      *)
(* abandoned). A snapshot is always a value of W.                          *)
(*                                                                         *)
(* Registration (SnapshotRegistry::acquire): claim a slot (kClaimed,       *)
(* ignored by collectors); w := W; loop { slot := w; if W = w adopt s = w  *)
(* else w := W }.                                                          *)
(*                                                                         *)
(* Commit (txn_commit): read-only -> release the slot. Otherwise try-lock  *)
(* the write set (a committer's lock -> abort; a pruner's lock -> wait);   *)
(* ts := ++last; serializable validation (every key read is not locked by *)
(* another committer and its newest version is <= start_ts; failure ->    *)
(* unlock, finish(ts) abandoned, abort); install one key at a time;        *)
(* unlock and finish(ts); wait until W >= ts; release the slot; then      *)
(* gc_view() (W_b := W, then collect the slots) and prune each written     *)
(* key under a GC lock taken with a try-lock (skipped if busy).            *)
(*                                                                         *)
(* Pruning (prune_chain, interval policy) with view (W_b, P): keep every   *)
(* version newer than W_b, the one visible at W_b and the one visible at   *)
(* each s in P below W_b; unlink the rest. The sweeper takes one view and  *)
(* prunes any keys with it, later, in any order. Expiry (under the        *)
(* transaction's mutex, so never during one of its calls) releases the     *)
(* slot.                                                                   *)
(*                                                                         *)
(* Abstractions: a read of one key (the chain walk under a kovan guard,   *)
(* which keeps unlinked versions and their links alive) is one step; a     *)
(* collect of all slots is one step; every key starts with value 0        *)
(* committed at revision 1 (the empty store's revision); no tombstones.    *)
(* Every writer writes 1 + (sum of the values it read) to each key of its *)
(* write set, so a lost update or write skew changes the final state.     *)
(*                                                                         *)
(* Mutation flags (each must make TLC report a safety violation):          *)
(*   StaleActiveSet: the committer collects the active set when it takes   *)
(*     its commit timestamp, before it reads W_b at prune time (a stale    *)
(*     copy of A, read before W_b: rule S1 broken).                        *)
(*   SkipValidation: commit without read validation.                       *)
(***************************************************************************)
EXTENDS Integers, FiniteSets

CONSTANTS
    Txns,            \* transaction identifiers (strings; each runs once)
    Keys,            \* keys (strings)
    RS,              \* RS[t]: keys t reads
    WS,              \* WS[t]: keys t writes ({} = read-only)
    UseSweeper,      \* include the background sweeper
    StaleActiveSet,  \* MUTATION: A collected before W_b (at commit-ts time)
    SkipValidation   \* MUTATION: no read validation at commit

ASSUME \A t \in Txns : RS[t] \subseteq Keys /\ WS[t] \subseteq Keys

None    == "none"      \* lock word 0
GcOwner == "gc"        \* lock word kGcOwner
Free    == 0           \* slot values: 0 free, -1 kClaimed, > 0 a snapshot
Claimed == -1

VARIABLES
    last,     \* CommitClock::last_
    W,        \* CommitClock::visible_
    fin,      \* timestamps > W already finished (the ring's marks)
    chain,    \* chain[k]: versions [ts, val] linked in k's chain
    hist,     \* ghost: hist[k]: every version ever installed on k
    pc,       \* pc[t]
    slot,     \* slot[t]: t's registry slot value (Free, Claimed, or a revision)
    cand,     \* cand[t]: candidate snapshot during registration
    snap,     \* snap[t]: adopted start_ts (0 before)
    rv,       \* rv[t][k]: value t read for k (-1 = not yet)
    cts,      \* cts[t]: commit timestamp (0 = none)
    view,     \* view[t]: the pruner's gc_view [floor, points]
    early,    \* early[t]: the stale collect of the mutation
    lock,     \* lock[k]: None, GcOwner or a transaction
    todo,     \* todo[t]: keys still to install / to prune
    swpc,     \* sweeper: "idle" or "view" (holding a view)
    swview,   \* the sweeper's view
    badRead   \* ghost: a read returned something other than the visible version

vars == <<last, W, fin, chain, hist, pc, slot, cand, snap, rv, cts, view, early,
          lock, todo, swpc, swview, badRead>>

NoVersion == [ts |-> -1, val |-> 0]

\* Newest version of C with ts <= s (NoVersion if none).
Vis(C, s) ==
    LET le == {v \in C : v.ts <= s}
    IN  IF le = {} THEN NoVersion
        ELSE CHOOSE v \in le : \A u \in le : u.ts <= v.ts

Newest(C) == CHOOSE v \in C : \A u \in C : u.ts <= v.ts

\* SnapshotRegistry::collect: every published (non-free, non-claimed) value.
Collect == {slot[t] : t \in {u \in Txns : slot[u] > 0}}

EmptyView == [floor |-> 0, points |-> {}]

\* prune_chain, interval policy.
Prune(C, V) ==
    LET pts == {s \in V.points : s < V.floor}
    IN  {v \in C : v.ts > V.floor}
          \cup ({Vis(C, s) : s \in pts \cup {V.floor}} \ {NoVersion})

RECURSIVE SumOver(_, _)
SumOver(f, S) == IF S = {} THEN 0
                 ELSE LET k == CHOOSE k \in S : TRUE IN f[k] + SumOver(f, S \ {k})
WVal(t) == 1 + SumOver(rv[t], RS[t])

ReadsDone(t) == \A k \in RS[t] : rv[t][k] >= 0

Unlocked(t) == [k \in Keys |-> IF lock[k] = t THEN None ELSE lock[k]]

Init ==
    /\ last = 1
    /\ W = 1
    /\ fin = {}
    /\ chain = [k \in Keys |-> {[ts |-> 1, val |-> 0]}]
    /\ hist = chain
    /\ pc = [t \in Txns |-> "idle"]
    /\ slot = [t \in Txns |-> Free]
    /\ cand = [t \in Txns |-> 0]
    /\ snap = [t \in Txns |-> 0]
    /\ rv = [t \in Txns |-> [k \in Keys |-> -1]]
    /\ cts = [t \in Txns |-> 0]
    /\ view = [t \in Txns |-> EmptyView]
    /\ early = [t \in Txns |-> {}]
    /\ lock = [k \in Keys |-> None]
    /\ todo = [t \in Txns |-> {}]
    /\ swpc = "idle"
    /\ swview = EmptyView
    /\ badRead = FALSE

---------------------------------------------------------------------------
(* The clock *)

\* clock_.finish(ts): mark ts finished and advance W over consecutive marks
\* (one step; W still lags behind an unfinished earlier timestamp).
RECURSIVE AdvanceFrom(_, _)
AdvanceFrom(w, F) == IF (w + 1) \in F THEN AdvanceFrom(w + 1, F) ELSE w

Finish(ts) ==
    /\ W' = AdvanceFrom(W, fin \cup {ts})
    /\ fin' = {u \in fin \cup {ts} : u > W'}

---------------------------------------------------------------------------
(* Registration: SnapshotRegistry::acquire *)

\* Claim a slot (kClaimed: ignored by collectors, so it is not modelled) and
\* read W: the first candidate.
Claim(t) ==
    /\ pc[t] = "idle"
    /\ cand' = [cand EXCEPT ![t] = W]
    /\ pc' = [pc EXCEPT ![t] = "publish"]
    /\ UNCHANGED <<last, W, fin, chain, hist, slot, snap, rv, cts, view, early,
                   lock, todo, swpc, swview, badRead>>

Publish(t) ==
    /\ pc[t] = "publish"
    /\ slot' = [slot EXCEPT ![t] = cand[t]]
    /\ pc' = [pc EXCEPT ![t] = "confirm"]
    /\ UNCHANGED <<last, W, fin, chain, hist, cand, snap, rv, cts, view, early,
                   lock, todo, swpc, swview, badRead>>

Confirm(t) ==
    /\ pc[t] = "confirm"
    /\ IF W = cand[t]
       THEN /\ snap' = [snap EXCEPT ![t] = cand[t]]
            /\ pc' = [pc EXCEPT ![t] = "active"]
            /\ cand' = cand
       ELSE /\ cand' = [cand EXCEPT ![t] = W]
            /\ pc' = [pc EXCEPT ![t] = "publish"]
            /\ snap' = snap
    /\ UNCHANGED <<last, W, fin, chain, hist, slot, rv, cts, view, early,
                   lock, todo, swpc, swview, badRead>>

---------------------------------------------------------------------------
(* Reads and the end of read-only transactions *)

Read(t, k) ==
    /\ pc[t] = "active"
    /\ k \in RS[t]
    /\ rv[t][k] = -1
    /\ LET v == Vis(chain[k], snap[t])
       IN  /\ rv' = [rv EXCEPT ![t][k] = IF v = NoVersion THEN 0 ELSE v.val]
           /\ badRead' = (badRead \/ v # Vis(hist[k], snap[t]))
    /\ UNCHANGED <<last, W, fin, chain, hist, pc, slot, cand, snap, cts, view, early,
                   lock, todo, swpc, swview>>

CommitReadOnly(t) ==
    /\ pc[t] = "active"
    /\ WS[t] = {}
    /\ ReadsDone(t)
    /\ slot' = [slot EXCEPT ![t] = Free]
    /\ pc' = [pc EXCEPT ![t] = "done"]
    /\ UNCHANGED <<last, W, fin, chain, hist, cand, snap, rv, cts, view, early,
                   lock, todo, swpc, swview, badRead>>

\* expire_txns: takes t's mutex, so only between calls.
Expire(t) ==
    /\ pc[t] = "active"
    /\ slot' = [slot EXCEPT ![t] = Free]
    /\ pc' = [pc EXCEPT ![t] = "expired"]
    /\ UNCHANGED <<last, W, fin, chain, hist, cand, snap, rv, cts, view, early,
                   lock, todo, swpc, swview, badRead>>

---------------------------------------------------------------------------
(* Commit of a read-write transaction: txn_commit *)

\* try_lock each written key: a committer's lock aborts, a pruner's lock waits.
LockWrites(t) ==
    /\ pc[t] = "active"
    /\ WS[t] # {}
    /\ ReadsDone(t)
    /\ \A k \in WS[t] : lock[k] # GcOwner
    /\ IF \A k \in WS[t] : lock[k] = None
       THEN /\ lock' = [k \in Keys |-> IF k \in WS[t] THEN t ELSE lock[k]]
            /\ pc' = [pc EXCEPT ![t] = "locked"]
            /\ slot' = slot
       ELSE /\ pc' = [pc EXCEPT ![t] = "aborted"]
            /\ slot' = [slot EXCEPT ![t] = Free]
            /\ lock' = lock
    /\ UNCHANGED <<last, W, fin, chain, hist, cand, snap, rv, cts, view, early,
                   todo, swpc, swview, badRead>>

\* clock_.acquire(). The mutation also collects A here.
TakeTs(t) ==
    /\ pc[t] = "locked"
    /\ last' = last + 1
    /\ cts' = [cts EXCEPT ![t] = last + 1]
    /\ early' = IF StaleActiveSet THEN [early EXCEPT ![t] = Collect] ELSE early
    /\ pc' = [pc EXCEPT ![t] = "stamped"]
    /\ UNCHANGED <<W, fin, chain, hist, slot, cand, snap, rv, view, lock, todo,
                   swpc, swview, badRead>>

\* validate(): unchanged() for every key read (a pruner's lock counts as free).
ValidOk(t) ==
    \A k \in RS[t] : /\ lock[k] \in {None, t, GcOwner}
                     /\ Newest(chain[k]).ts <= snap[t]

Validate(t) ==
    /\ pc[t] = "stamped"
    /\ IF SkipValidation \/ ValidOk(t)
       THEN /\ pc' = [pc EXCEPT ![t] = "installing"]
            /\ todo' = [todo EXCEPT ![t] = WS[t]]
            /\ UNCHANGED <<lock, slot, fin, W>>
       ELSE /\ pc' = [pc EXCEPT ![t] = "aborted"]
            /\ lock' = Unlocked(t)
            /\ Finish(cts[t])                    \* abandoned timestamp
            /\ slot' = [slot EXCEPT ![t] = Free]
            /\ todo' = todo
    /\ UNCHANGED <<last, chain, hist, cand, snap, rv, cts, view, early,
                   swpc, swview, badRead>>

Install(t, k) ==
    /\ pc[t] = "installing"
    /\ k \in todo[t]
    /\ LET nv == [ts |-> cts[t], val |-> WVal(t)]
       IN  /\ chain' = [chain EXCEPT ![k] = chain[k] \cup {nv}]
           /\ hist' = [hist EXCEPT ![k] = hist[k] \cup {nv}]
    /\ todo' = [todo EXCEPT ![t] = todo[t] \ {k}]
    /\ UNCHANGED <<last, W, fin, pc, slot, cand, snap, rv, cts, view, early, lock,
                   swpc, swview, badRead>>

\* Unlock every written key, then clock_.finish(ts).
UnlockFinish(t) ==
    /\ pc[t] = "installing"
    /\ todo[t] = {}
    /\ lock' = Unlocked(t)
    /\ Finish(cts[t])
    /\ pc' = [pc EXCEPT ![t] = "waitVisible"]
    /\ UNCHANGED <<last, chain, hist, slot, cand, snap, rv, cts, view, early,
                   todo, swpc, swview, badRead>>

\* wait_visible(ts), then close_snapshot.
Visible(t) ==
    /\ pc[t] = "waitVisible"
    /\ W >= cts[t]
    /\ slot' = [slot EXCEPT ![t] = Free]
    /\ pc' = [pc EXCEPT ![t] = "viewFloor"]
    /\ UNCHANGED <<last, W, fin, chain, hist, cand, snap, rv, cts, view, early,
                   lock, todo, swpc, swview, badRead>>

\* gc_view(): W_b first ...
ViewFloor(t) ==
    /\ pc[t] = "viewFloor"
    /\ view' = [view EXCEPT ![t] = [floor |-> W, points |-> {}]]
    /\ pc' = [pc EXCEPT ![t] = "viewCollect"]
    /\ UNCHANGED <<last, W, fin, chain, hist, slot, cand, snap, rv, cts, early,
                   lock, todo, swpc, swview, badRead>>

\* ... then the slots (or, in the mutation, the copy taken at TakeTs).
ViewCollect(t) ==
    /\ pc[t] = "viewCollect"
    /\ view' = [view EXCEPT ![t].points = IF StaleActiveSet THEN early[t] ELSE Collect]
    /\ todo' = [todo EXCEPT ![t] = WS[t]]
    /\ pc' = [pc EXCEPT ![t] = "pruning"]
    /\ UNCHANGED <<last, W, fin, chain, hist, slot, cand, snap, rv, cts, early,
                   lock, swpc, swview, badRead>>

\* prune_key: try-lock as GcOwner (skip the key if busy), prune, unlock.
PruneKey(t, k) ==
    /\ pc[t] = "pruning"
    /\ k \in todo[t]
    /\ chain' = IF lock[k] = None
                THEN [chain EXCEPT ![k] = Prune(chain[k], view[t])]
                ELSE chain
    /\ todo' = [todo EXCEPT ![t] = todo[t] \ {k}]
    /\ UNCHANGED <<last, W, fin, hist, pc, slot, cand, snap, rv, cts, view, early,
                   lock, swpc, swview, badRead>>

CommitDone(t) ==
    /\ pc[t] = "pruning"
    /\ todo[t] = {}
    /\ pc' = [pc EXCEPT ![t] = "done"]
    /\ UNCHANGED <<last, W, fin, chain, hist, slot, cand, snap, rv, cts, view, early,
                   lock, todo, swpc, swview, badRead>>

---------------------------------------------------------------------------
(* The background sweeper: one view, then any keys, any time later *)

SweepView ==
    /\ UseSweeper
    /\ swpc = "idle"
    /\ swview' = [floor |-> W, points |-> Collect]    \* one step: W_b, then collect
    /\ swpc' = "view"
    /\ UNCHANGED <<last, W, fin, chain, hist, pc, slot, cand, snap, rv, cts, view,
                   early, lock, todo, badRead>>

SweepKey(k) ==
    /\ swpc = "view"
    /\ lock[k] = None
    /\ chain' = [chain EXCEPT ![k] = Prune(chain[k], swview)]
    /\ chain' # chain
    /\ UNCHANGED <<last, W, fin, hist, pc, slot, cand, snap, rv, cts, view, early,
                   lock, todo, swpc, swview, badRead>>

SweepDone ==
    /\ swpc = "view"
    /\ swpc' = "idle"
    /\ swview' = EmptyView
    /\ UNCHANGED <<last, W, fin, chain, hist, pc, slot, cand, snap, rv, cts, view,
                   early, lock, todo, badRead>>

---------------------------------------------------------------------------
Next ==
    \/ \E t \in Txns :
          \/ Claim(t) \/ Publish(t) \/ Confirm(t)
          \/ CommitReadOnly(t) \/ Expire(t) \/ LockWrites(t) \/ TakeTs(t)
          \/ Validate(t) \/ UnlockFinish(t) \/ Visible(t) \/ ViewFloor(t)
          \/ ViewCollect(t) \/ CommitDone(t)
          \/ \E k \in Keys : Read(t, k) \/ Install(t, k) \/ PruneKey(t, k)
    \/ SweepView \/ SweepDone \/ \E k \in Keys : SweepKey(k)

Spec == Init /\ [][Next]_vars

---------------------------------------------------------------------------
(* Scenarios (a configuration sets RS <- GcRS, WS <- GcWS, or the Iso pair).  *)
(* Gc, on key x: "w1" reads and writes x, "w2" writes x blind (a one-shot put *)
(* reads nothing), "r" reads x. Two writers and a reader are what a stale     *)
(* active set needs: r registers at a revision between the two commits after *)
(* the stale collect, and the second pruner drops the version r needs.       *)
GcRS == [t \in Txns |-> IF t = "w2" THEN {} ELSE {"x"}]
GcWS == [t \in Txns |-> IF t = "r" THEN {} ELSE {"x"}]
(* Iso, on keys x and y: "a" and "b" read both keys and write x and y         *)
(* respectively (write skew if unvalidated); "c" reads and writes x (a lost  *)
(* update against "a" if unvalidated).                                        *)
IsoRS == [t \in Txns |-> IF t = "c" THEN {"x"} ELSE {"x", "y"}]
IsoWS == [t \in Txns |-> CASE t = "a" -> {"x"} [] t = "b" -> {"y"} [] OTHER -> {"x"}]

---------------------------------------------------------------------------
(* Properties *)

TypeOK ==
    /\ W <= last
    /\ \A k \in Keys : chain[k] \subseteq hist[k] /\ chain[k] # {}
    /\ \A t \in Txns : slot[t] \in {Free, Claimed} \cup (1..last)

\* S1/E4: every registered snapshot can read, for every key, the version
\* visible at its timestamp (among all versions ever installed), and so can
\* every future snapshot (a future snapshot is a value of W >= the current W).
SnapshotsCanRead ==
    /\ \A t \in Txns : (pc[t] \notin {"idle", "publish", "confirm"}
                        /\ slot[t] # Free)
                         => \A k \in Keys : Vis(hist[k], snap[t]) \in chain[k]
    /\ \A k \in Keys : Vis(hist[k], W) \in chain[k]

ReadsCorrect == ~badRead

\* Nothing is committing.
Quiescent == \A t \in Txns : pc[t] \notin {"locked", "stamped", "installing", "waitVisible"}

\* Serial position: writers at 2*ts, read-only transactions just after their
\* snapshot (strict serializability with one clock).
Pos(t) == IF WS[t] = {} THEN 2 * snap[t] + 1 ELSE 2 * cts[t]

Committed == {t \in Txns : pc[t] \in {"viewFloor", "viewCollect", "pruning", "done"}}

\* Replaying the committed transactions serially in Pos order from the initial
\* state gives each exactly what it read, and ends in the newest versions.
RECURSIVE Replay(_, _)
Replay(S, st) ==
    IF S = {} THEN \A k \in Keys : Newest(chain[k]).val = st[k]
    ELSE LET t == CHOOSE t \in S : \A u \in S : Pos(t) <= Pos(u)
         IN  /\ \A k \in RS[t] : rv[t][k] = st[k]
             /\ Replay(S \ {t},
                       [k \in Keys |-> IF k \in WS[t] THEN WVal(t) ELSE st[k]])

Serializable == Quiescent => Replay(Committed, [k \in Keys |-> 0])

\* After pruning with view V, at most |points below W_b| + 1 versions at or
\* below W_b remain (docs/STORAGE.md's bound |A| + 1).
PruneBound ==
    \A k \in Keys, t \in Txns :
        LET V == view[t]
            P == Prune(chain[k], V)
        IN  Cardinality({v \in P : v.ts <= V.floor})
                <= Cardinality({s \in V.points : s < V.floor}) + 1
=============================================================================
