----------------------------- MODULE Reclaimer -----------------------------
(***************************************************************************)
(* kovan, the reclaimer, as built: docs/RECLAIMER.md, kovan/src/kovan.cpp  *)
(* (protect_slow, slow_path, advance_era, help, raise, try_attach_once,    *)
(* emit, walk, free_batch, adopt, release_thread),                         *)
(* kovan/include/kovan/detail/runtime.hpp (enter, leave, protect: the      *)
(* inlined first try) and kovan/include/kovan/kovan.hpp (Node header,      *)
(* Guard, Atomic, retire, flush).                                          *)
(*                                                                         *)
(* The shared structure is a Treiber stack over a pool of node ids: `root` *)
(* points to the top node, each node's `nxt` field to the next one. A      *)
(* reader pins, loads root (p) through the protected load, dereferences p  *)
(* to load p.nxt (q) through the protected load -- so the slow path's src  *)
(* is a field inside a node the requester holds (the "parent problem") --  *)
(* and then either unpins or pops (CAS root p -> q, retire p) and unpins.  *)
(* A pusher allocates a free id (birth = G), possibly advancing the era    *)
(* first (with helping), and pushes it. A freed id can be allocated again. *)
(*                                                                         *)
(* Granularity: one step per shared access of the code, except where a     *)
(* comment at the action says which accesses are merged and why that adds *)
(* no behaviour the code lacks. In particular the slow path reads the era  *)
(* and acts on it in separate steps, as the code does: the requester reads *)
(* g := G, and only later either CASes its result (g <= s) or raises its   *)
(* slot to that g (possibly older than G by then); the helper reads        *)
(* e := G, later raises the requester's slot to e, later reads src, later  *)
(* reads g := G and compares it with e, and later CASes the result.        *)
(*                                                                         *)
(* Memory model: sequential consistency (every shared access is one step   *)
(* in a global order). The code's seq_cst fences are what make SC reasoning*)
(* valid; the mutation StaleRetireScan removes the retirer's fence Y by    *)
(* letting its slot scan see the slots as they were when it unlinked the   *)
(* node (the scan's loads reordered before the unlink became visible).     *)
(*                                                                         *)
(* Checked each step (ghost flag `uaf`): a node is freed while some thread *)
(* holds it under a guard; a protected load returns a pointer freed since  *)
(* it was read; a helper dereferences the node holding src after that node *)
(* was freed; a reader dereferences a freed node.                          *)
(* Wait-freedom of the slow path: the requester's own steps in it are      *)
(* counted (ghost loc.ss) and bounded by a function of the thread count    *)
(* alone, whatever MaxEra is (SlowStepsBounded).                           *)
(*                                                                         *)
(* Not modelled: dummy padding nodes (flush attaches whatever it has, as   *)
(* padding allows); nested guards; allocations made by destructors (so no *)
(* era advance nested inside help); kMaxSplits (at most 4 slots here, 8    *)
(* cuts in the code); kRetireBatch (an attach is tried on every retire);   *)
(* kEraFrequency (an allocation may or may not advance the era).           *)
(***************************************************************************)
EXTENDS Integers, FiniteSets, Sequences

CONSTANTS
    Threads,            \* thread records, e.g. {1, 2}
    K,                  \* node ids 1..K
    MaxEra,             \* the era stops advancing here (keeps the model finite)
    FastTries,          \* kFastPathTries
    Budget,             \* Budget[t]: operations thread t may start (0: unbounded)
    StallSet,           \* threads that may stall for ever
    UseBump,            \* include allocations that are never published (Bump)
    StaleRetireScan,    \* MUTATION: no fence Y (retirer scans a stale view)
    NoHelperRecheck,    \* MUTATION: helper skips the re-check after publishing
    NoFinisherCheck,    \* MUTATION: finisher ignores active helper slots
    NoHelping,          \* MUTATION: advance_era never helps
    NoRaise             \* MUTATION: help() does not raise the requester's era

Nodes   == 1..K
Null    == 0
Pending == -1
Kinds   == {"m", "h"}            \* main and helper slot
SlotIds == Threads \X Kinds
NoBatch == [nodes |-> {}, min |-> 0, refs |-> 0]
N       == Cardinality(Threads)

VARIABLES
    G,              \* g_era
    root,           \* the stack top
    nst,            \* nst[x] \in {"free", "live", "ret"}
    birth,          \* birth[x]
    nxt,            \* nxt[x]
    slot,           \* slot[t][k] = [act, era, list]; list: set of batch ids
    pub,            \* pub[t]: pub_era
    bat,            \* bat[c]: the batch whose counting node is c
    part,           \* part[t]: partial batch
    orphans,        \* g_orphans (a set of retired nodes)
    helpers,        \* g_helpers_active
    slowc,          \* g_slow_counter
    req, res, tag,  \* request / result words and tags
    pc,             \* pc[t]
    loc,            \* loc[t]: local variables of t (and its ghost step counters)
    dang,           \* ghost: dang[t]: "freed since read" flags of t's references
    held,           \* ghost: held[t]: nodes t holds under its guard
    uaf,            \* ghost: a use-after-free happened
    stalled,        \* ghost: stalled[t]
    budget,         \* budget[t]
    bnd             \* ghost for the memory bound (see MemoryBound)

vars == <<G, root, nst, birth, nxt, slot, pub, bat, part, orphans, helpers, slowc,
          req, res, tag, pc, loc, dang, held, uaf, stalled, budget, bnd>>

\* Locals: s (the era the load checks against), lp (pointer read), src (0: root,
\* x: the nxt field of node x), ret (which load), tries, p1 (the popped node), g
\* (the requester's era read), el (the eligible slots seen by a scan, as
\* <<thread, kind, era>>), emits (batches still to emit), cands (slots left to
\* push to), view (StaleRetireScan), c, k (batch being emitted, pushes done),
\* force, aret (where an attach returns), walk, wret, todo, r, hsrc, htag, hera,
\* he, hp (helper's locals), ax (node being allocated). Ghosts: fails (failed
\* slow-path iterations), ss (slow-path steps).
InitLoc == [s |-> 0, lp |-> Null, src |-> 0, ret |-> "p", tries |-> 0, p1 |-> Null,
            g |-> 0, el |-> {}, emits |-> <<>>, cands |-> {}, view |-> {}, c |-> 0,
            k |-> 0, force |-> FALSE, aret |-> "idle", walk |-> {}, wret |-> "idle",
            todo |-> {}, r |-> 0, hsrc |-> 0, htag |-> 0, hera |-> 0, he |-> 0,
            hp |-> Null, ax |-> 0, fails |-> 0, ss |-> 0]
InitDang == [lp |-> FALSE, hp |-> FALSE, hpar |-> FALSE, res |-> FALSE, reqpar |-> FALSE]

Init ==
    /\ G = 1
    /\ root = 1
    /\ nst = [x \in Nodes |-> IF x = 1 THEN "live" ELSE "free"]
    /\ birth = [x \in Nodes |-> 1]
    /\ nxt = [x \in Nodes |-> Null]
    /\ slot = [t \in Threads |-> [k \in Kinds |-> [act |-> FALSE, era |-> 0, list |-> {}]]]
    /\ pub = [t \in Threads |-> 0]
    /\ bat = [c \in Nodes |-> NoBatch]
    /\ part = [t \in Threads |-> {}]
    /\ orphans = {}
    /\ helpers = 0
    /\ slowc = 0
    /\ req = [t \in Threads |-> [src |-> 0, tag |-> 0]]
    /\ res = [t \in Threads |-> [ptr |-> Null, tag |-> 0]]
    /\ tag = [t \in Threads |-> 0]
    /\ pc = [t \in Threads |-> "idle"]
    /\ loc = [t \in Threads |-> InitLoc]
    /\ dang = [t \in Threads |-> InitDang]
    /\ held = [t \in Threads |-> {}]
    /\ uaf = FALSE
    /\ stalled = [t \in Threads |-> FALSE]
    /\ budget = Budget
    /\ bnd = [on |-> FALSE, t |-> 0, era |-> 0, m |-> 0, f |-> 0]

---------------------------------------------------------------------------
(* Helpers *)

Max(a, b) == IF a >= b THEN a ELSE b
MinBirth(S) == CHOOSE b \in {birth[x] : x \in S} : \A y \in S : b <= birth[y]
MinId(S) == CHOOSE x \in S : \A y \in S : x <= y

\* The slots a scan sees (after fence Y): active, era >= mb, with their eras.
EligibleNow(mb) == {<<u, k, slot[u][k].era>> :
                      <<u, k>> \in {s \in SlotIds : slot[s[1]][s[2]].act /\
                                                    slot[s[1]][s[2]].era >= mb}}
\* The same from a recorded view (a set of <<u, k, era>> of active slots).
EligibleIn(V, mb) == {v \in V : v[3] >= mb}
ActiveView == {<<u, k, slot[u][k].era>> : <<u, k>> \in {s \in SlotIds : slot[s[1]][s[2]].act}}

\* Eligible::count_at_least: slots of el whose era is >= m.
AtLeast(el, m) == {v \in el : v[3] >= m}

\* try_attach_once's split by birth. The distinct eras of el cut the nodes P
\* into groups (births <= the smallest cut, ..., and the youngest group born
\* after every cut); from the youngest group to the oldest, a group with the
\* nodes carried into it becomes a batch when it has at least
\* |AtLeast(el, its minimum birth)| + 1 nodes, else it is carried into the next
\* older one. Result: <<batches in emit order, what stays as the partial batch>>.
Forms(C, el) == C # {} /\ Cardinality(C) >= Cardinality(AtLeast(el, MinBirth(C))) + 1
RECURSIVE SplitR(_, _, _, _, _)
\* P: nodes born at or before the current group's upper bound; cs: cuts below it.
SplitR(P, el, cs, out, carry) ==
    IF cs = {}
    THEN LET c2 == carry \cup P
         IN  IF Forms(c2, el) THEN <<Append(out, c2), {}>> ELSE <<out, c2>>
    ELSE LET top == CHOOSE x \in cs : \A y \in cs : y <= x
             c2  == carry \cup {x \in P : birth[x] > top}
             rest == {x \in P : birth[x] <= top}
         IN  IF Forms(c2, el)
             THEN SplitR(rest, el, cs \ {top}, Append(out, c2), {})
             ELSE SplitR(rest, el, cs \ {top}, out, c2)
Split(P, el) == SplitR(P, el, {v[3] : v \in el}, <<>>, {})

\* free_batch's deferral test (fence F, helpers_active, then the helper slots).
Defer(mb) ==
    /\ ~NoFinisherCheck
    /\ helpers > 0
    /\ \E u \in Threads : slot[u]["h"].act /\ slot[u]["h"].era >= mb

\* Freeing the nodes S: mark every reference that now dangles.
FreeNodes(S) ==
    /\ nst' = [x \in Nodes |-> IF x \in S THEN "free" ELSE nst[x]]
    /\ dang' = [t \in Threads |->
                 [lp |-> dang[t].lp \/ loc[t].lp \in S,
                  hp |-> dang[t].hp \/ loc[t].hp \in S,
                  hpar |-> dang[t].hpar \/ loc[t].hsrc \in S,
                  res |-> dang[t].res \/ res[t].ptr \in S,
                  reqpar |-> dang[t].reqpar \/ req[t].src \in S]]
    /\ uaf' = (uaf \/ \E t \in Threads : held[t] \cap S # {})

\* The count of batch c (already updated in b1) reached 0: finish it.
Finish(c, b1) ==
    /\ bat' = [b1 EXCEPT ![c] = NoBatch]
    /\ IF Defer(b1[c].min)
       THEN /\ orphans' = orphans \cup b1[c].nodes
            /\ UNCHANGED <<nst, dang, uaf>>
       ELSE /\ orphans' = orphans
            /\ FreeNodes(b1[c].nodes)

NoFinish(b1) == bat' = b1 /\ UNCHANGED <<orphans, nst, dang, uaf>>

Active(t) == ~stalled[t]

SetLoc(t, r) == loc' = [loc EXCEPT ![t] = r]
Goto(t, l) == pc' = [pc EXCEPT ![t] = l]

---------------------------------------------------------------------------
(* Operations chosen by an idle thread *)

Spend(t) == budget' = [budget EXCEPT ![t] = IF Budget[t] = 0 THEN @ ELSE @ - 1]
CanSpend(t) == Budget[t] = 0 \/ budget[t] > 0

\* A reader / popper: enter() -- e := G; era := e, pub_era := e, then the list
\* is activated, then fence X (one step: a scan in between would see the slot
\* inactive, as it would before the pin; eras never exceed G, so the store of
\* e is the max written here).
StartRead(t) ==
    /\ pc[t] = "idle" /\ CanSpend(t) /\ Spend(t)
    /\ LET e == Max(slot[t]["m"].era, G)
       IN  /\ slot' = [slot EXCEPT ![t]["m"] = [act |-> TRUE, era |-> e, list |-> {}]]
           /\ pub' = [pub EXCEPT ![t] = e]
           /\ SetLoc(t, [loc[t] EXCEPT !.src = 0, !.ret = "p", !.tries = 0, !.s = e])
    /\ Goto(t, "ld")
    /\ UNCHANGED <<G, root, nst, birth, nxt, bat, part, orphans, helpers, slowc, req, res,
                   tag, dang, held, uaf, stalled, bnd>>

\* A pusher allocates a free id (the lowest: ids are interchangeable) and
\* pushes it; on_allocate may first advance the era (then AdvInc links it).
\* The node's birth is G when it is linked: a birth as new as possible is the
\* hardest case for the attach rule.
LinkOps(x, g) ==
    /\ birth' = [birth EXCEPT ![x] = g]
    /\ nxt' = [nxt EXCEPT ![x] = root]
    /\ root' = x
    /\ bnd' = IF bnd.on /\ g <= bnd.era THEN [bnd EXCEPT !.f = @ + 1] ELSE bnd

StartPush(t) ==
    /\ pc[t] = "idle" /\ CanSpend(t) /\ Spend(t)
    /\ \E x \in Nodes : nst[x] = "free"
    /\ LET x == CHOOSE x \in Nodes : nst[x] = "free" /\ \A y \in Nodes : nst[y] = "free" => x <= y
       IN  /\ nst' = [nst EXCEPT ![x] = "live"]
           /\ \/ /\ G < MaxEra
                 /\ SetLoc(t, [loc[t] EXCEPT !.ax = x])
                 /\ Goto(t, "adv")
                 /\ UNCHANGED <<birth, nxt, root, bnd>>
              \/ /\ LinkOps(x, G)
                 /\ Goto(t, "idle")
                 /\ UNCHANGED loc
    /\ UNCHANGED <<G, slot, pub, bat, part, orphans, helpers, slowc, req,
                   res, tag, dang, held, uaf, stalled>>

\* flush(): adopt the orphans, then attach the partial batch now (padded).
StartFlush(t) ==
    /\ pc[t] = "idle" /\ CanSpend(t) /\ Spend(t)
    /\ part[t] \cup orphans # {}
    /\ part' = [part EXCEPT ![t] = @ \cup orphans]
    /\ orphans' = {}
    /\ SetLoc(t, [loc[t] EXCEPT !.force = TRUE, !.aret = "idle"])
    /\ Goto(t, "scan")
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, helpers, slowc, req, res, tag,
                   dang, held, uaf, stalled, bnd>>

\* Thread exit (release_thread): the partial batch becomes orphans, the record is free.
Exit(t) ==
    /\ pc[t] = "idle" /\ CanSpend(t) /\ Spend(t)
    /\ orphans' = orphans \cup part[t]
    /\ part' = [part EXCEPT ![t] = {}]
    /\ Goto(t, "exited")
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, helpers, slowc, req, res, tag,
                   loc, dang, held, uaf, stalled, bnd>>

\* A new thread claims the record (tags, eras stay).
Register(t) ==
    /\ pc[t] = "exited"
    /\ Goto(t, "idle")
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, part, orphans, helpers, slowc,
                   req, res, tag, loc, dang, held, uaf, stalled, budget, bnd>>

\* With the budget spent: a last flush, then nothing.
Quit(t) ==
    /\ pc[t] = "idle" /\ ~CanSpend(t)
    /\ part' = [part EXCEPT ![t] = @ \cup orphans]
    /\ orphans' = {}
    /\ SetLoc(t, [loc[t] EXCEPT !.force = TRUE, !.aret = "done"])
    /\ Goto(t, "scan")
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, helpers, slowc, req, res, tag,
                   dang, held, uaf, stalled, budget, bnd>>

\* A thread in StallSet stops for ever (anywhere but idle / exited / done).
Stall(t) ==
    /\ t \in StallSet
    /\ ~stalled[t]
    /\ pc[t] \notin {"idle", "exited", "done"}
    /\ \A u \in Threads : ~stalled[u]
    /\ stalled' = [stalled EXCEPT ![t] = TRUE]
    /\ bnd' = [on |-> TRUE, t |-> t,
               era |-> Max(IF slot[t]["m"].act THEN slot[t]["m"].era ELSE 0,
                           IF slot[t]["h"].act THEN slot[t]["h"].era ELSE 0),
               m |-> Cardinality({x \in Nodes : nst[x] # "free"}), f |-> 0]
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, part, orphans, helpers, slowc,
                   req, res, tag, pc, loc, dang, held, uaf, budget>>

---------------------------------------------------------------------------
(* The protected load, fast path: protect (runtime.hpp), protect_slow *)

\* Read src: the root, or the nxt field of node loc.src (a dereference).
SrcVal(x) == IF x = 0 THEN root ELSE nxt[x]
DerefBad(x) == x # 0 /\ nst[x] = "free"

\* p := src.load()  (s was set when the try began: pub_era, or the raise).
LdRead(t) ==
    /\ pc[t] = "ld"
    /\ uaf' = (uaf \/ DerefBad(loc[t].src))
    /\ SetLoc(t, [loc[t] EXCEPT !.lp = SrcVal(loc[t].src)])
    /\ dang' = [dang EXCEPT ![t].lp = FALSE]
    /\ Goto(t, "ldchk")
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, part, orphans, helpers, slowc,
                   req, res, tag, held, stalled, budget, bnd>>

\* Where a load returns to: after p, load p.nxt; after q, pop or unpin.
AfterLoad(t, v) ==
    IF loc[t].ret = "p"
    THEN IF v = Null
         THEN /\ SetLoc(t, [loc[t] EXCEPT !.lp = v]) /\ Goto(t, "unpin")
         ELSE /\ SetLoc(t, [loc[t] EXCEPT !.lp = v, !.p1 = v, !.src = v, !.ret = "q",
                                          !.tries = 0, !.s = pub[t]])
              /\ Goto(t, "ld")
    ELSE \* Without fence Y the scan after the unlink may see the slots as
         \* they were at this load, the retirer's last before the unlink.
         /\ SetLoc(t, [loc[t] EXCEPT !.lp = v,
                                     !.view = IF StaleRetireScan THEN ActiveView ELSE {}])
         /\ \E pop \in BOOLEAN : Goto(t, IF pop THEN "cas" ELSE "unpin")

\* g := G; if g <= s, return p. Otherwise: the first try (protect) goes on to
\* protect_slow without raising; protect_slow's loop makes kFastPathTries - 1
\* more tries (FRaise), then calls slow_path.
LdCheck(t) ==
    /\ pc[t] = "ldchk"
    /\ IF G <= loc[t].s
       THEN /\ uaf' = (uaf \/ dang[t].lp)
            /\ held' = [held EXCEPT ![t] = IF loc[t].lp = Null THEN @ ELSE @ \cup {loc[t].lp}]
            /\ AfterLoad(t, loc[t].lp)
       ELSE /\ SetLoc(t, [loc[t] EXCEPT !.tries = @ + 1])
            /\ Goto(t, IF loc[t].tries + 1 < FastTries THEN "fraise" ELSE "slow0")
            /\ UNCHANGED <<uaf, held>>
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, part, orphans, helpers, slowc,
                   req, res, tag, dang, stalled, budget, bnd>>

\* protect_slow's loop head: s := raise(era, G.load()); pub_era := s; fence X.
\* (The read of G and the raise are merged: the raise only writes this
\* thread's own slot, and the check that follows re-reads G.)
FRaise(t) ==
    /\ pc[t] = "fraise"
    /\ LET e == Max(slot[t]["m"].era, G)
       IN  /\ slot' = [slot EXCEPT ![t]["m"].era = e]
           /\ pub' = [pub EXCEPT ![t] = e]
           /\ SetLoc(t, [loc[t] EXCEPT !.s = e])
    /\ Goto(t, "ld")
    /\ UNCHANGED <<G, root, nst, birth, nxt, bat, part, orphans, helpers, slowc, req, res,
                   tag, dang, held, uaf, stalled, budget, bnd>>

---------------------------------------------------------------------------
(* The slow path (slow_path): publish the request, then try, helped.       *)
(* Every step of the requester here adds 1 to its ghost step count loc.ss. *)

PendingOf(t) == [ptr |-> Pending, tag |-> tag[t]]

\* tag := ++my_tag; request := {src, tag}; result := {PENDING, tag};
\* slow_counter += 1. One step: a helper that reads the request between the
\* two stores finds the old result, not {PENDING, tag}, and skips it, as it
\* would before the request; the order against advancers' reads of
\* slow_counter is kept (this step is that increment).
Slow0(t) ==
    /\ pc[t] = "slow0"
    /\ tag' = [tag EXCEPT ![t] = @ + 1]
    /\ req' = [req EXCEPT ![t] = [src |-> loc[t].src, tag |-> tag[t] + 1]]
    /\ res' = [res EXCEPT ![t] = [ptr |-> Pending, tag |-> tag[t] + 1]]
    /\ dang' = [dang EXCEPT ![t].res = FALSE, ![t].reqpar = FALSE]
    /\ slowc' = slowc + 1
    /\ SetLoc(t, [loc[t] EXCEPT !.fails = 0, !.ss = 1])
    /\ Goto(t, "sld")
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, part, orphans, helpers, held,
                   uaf, stalled, budget, bnd>>

\* Loop head: s := pub_era (owner-only); p := src.load().
SlowRead(t) ==
    /\ pc[t] = "sld"
    /\ uaf' = (uaf \/ DerefBad(loc[t].src))
    /\ SetLoc(t, [loc[t] EXCEPT !.s = pub[t], !.lp = SrcVal(loc[t].src), !.ss = @ + 1])
    /\ dang' = [dang EXCEPT ![t].lp = FALSE]
    /\ Goto(t, "sg")
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, part, orphans, helpers, slowc,
                   req, res, tag, held, stalled, budget, bnd>>

\* g := G.load().
SlowG(t) ==
    /\ pc[t] = "sg"
    /\ SetLoc(t, [loc[t] EXCEPT !.g = G, !.ss = @ + 1])
    /\ Goto(t, "schk")
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, part, orphans, helpers, slowc,
                   req, res, tag, dang, held, uaf, stalled, budget, bnd>>

\* g <= s: dwcas(result, {PENDING, tag} -> {p, tag}) and leave the loop.
\* Otherwise pub_era := raise(era, g) -- the g read before, which G may have
\* passed since -- then fence X.
SlowCheck(t) ==
    /\ pc[t] = "schk"
    /\ IF loc[t].g <= loc[t].s
       THEN /\ IF res[t] = PendingOf(t)
               THEN /\ res' = [res EXCEPT ![t].ptr = loc[t].lp]
                    /\ dang' = [dang EXCEPT ![t].res = dang[t].lp]
               ELSE UNCHANGED <<res, dang>>
            /\ SetLoc(t, [loc[t] EXCEPT !.ss = @ + 1])
            /\ Goto(t, "send")
            /\ UNCHANGED <<slot, pub>>
       ELSE LET e == Max(slot[t]["m"].era, loc[t].g)
            IN  /\ slot' = [slot EXCEPT ![t]["m"].era = e]
                /\ pub' = [pub EXCEPT ![t] = e]
                /\ SetLoc(t, [loc[t] EXCEPT !.fails = @ + 1, !.ss = @ + 1])
                /\ Goto(t, "sres")
                /\ UNCHANGED <<res, dang>>
    /\ UNCHANGED <<G, root, nst, birth, nxt, bat, part, orphans, helpers, slowc, req, tag,
                   held, uaf, stalled, budget, bnd>>

\* if result != {PENDING, tag}: break (a helper did it); else loop.
SlowRes(t) ==
    /\ pc[t] = "sres"
    /\ SetLoc(t, [loc[t] EXCEPT !.ss = @ + 1])
    /\ Goto(t, IF res[t] = PendingOf(t) THEN "sld" ELSE "send")
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, part, orphans, helpers, slowc,
                   req, res, tag, dang, held, uaf, stalled, budget, bnd>>

\* res := dwload(result); slow_counter -= 1; return res.pointer. (The result
\* no longer changes once it is not PENDING, so the read and the decrement
\* are merged: an advancer that reads slow_counter in between helps nothing.)
SlowEnd(t) ==
    /\ pc[t] = "send"
    /\ LET v == res[t].ptr
       IN  /\ uaf' = (uaf \/ dang[t].res)
           /\ held' = [held EXCEPT ![t] = IF v = Null THEN @ ELSE @ \cup {v}]
           /\ AfterLoad(t, v)
    /\ slowc' = slowc - 1
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, part, orphans, helpers, req,
                   res, tag, dang, stalled, budget, bnd>>

---------------------------------------------------------------------------
(* Pop: CAS root p -> q, then retire p *)

Cas(t) ==
    /\ pc[t] = "cas"
    /\ IF root = loc[t].p1
       THEN /\ root' = loc[t].lp
            /\ nst' = [nst EXCEPT ![loc[t].p1] = "ret"]
            \* retire(p): append; adopt the orphans; then try to attach.
            /\ part' = [part EXCEPT ![t] = @ \cup {loc[t].p1} \cup orphans]
            /\ orphans' = {}
            /\ SetLoc(t, [loc[t] EXCEPT !.force = FALSE, !.aret = "unpin"])
            /\ Goto(t, "scan")
       ELSE /\ Goto(t, "unpin")
            /\ UNCHANGED <<root, nst, loc, part, orphans>>
    /\ UNCHANGED <<G, birth, nxt, slot, pub, bat, helpers, slowc, req, res,
                   tag, dang, held, uaf, stalled, budget, bnd>>

---------------------------------------------------------------------------
(* Attaching (try_attach_once with the split by birth, emit) *)

\* emit's set-up for the first batch of `emits` (owner-only: the batch is not
\* visible before its first push): the counting node, the slots to push to.
BeginEmit(t, emits, el) ==
    LET C == Head(emits)
        c == MinId(C)
        mb == MinBirth(C)
    IN  /\ bat' = [bat EXCEPT ![c] = [nodes |-> C, min |-> mb, refs |-> 0]]
        /\ SetLoc(t, [loc[t] EXCEPT !.emits = Tail(emits), !.el = el, !.c = c, !.k = 0,
                                    !.cands = {<<v[1], v[2]>> : v \in AtLeast(el, mb)}])
        /\ Goto(t, "push")

\* Fence Y, then the scan of every main and helper slot (one step: SC). Not
\* forced: split by birth; the batches formed are emitted one after the
\* other, what is left stays as the partial batch. Forced (flush): the whole
\* partial batch is one batch, padded to |eligible| + 1 nodes.
Scan(t) ==
    /\ pc[t] = "scan"
    /\ IF part[t] = {}
       THEN /\ Goto(t, loc[t].aret) /\ UNCHANGED <<part, bat, loc>>
       ELSE LET mb == MinBirth(part[t])
                el == IF StaleRetireScan /\ ~loc[t].force
                      THEN EligibleIn(loc[t].view, mb) ELSE EligibleNow(mb)
                sp == IF loc[t].force THEN <<<<part[t]>>, {}>> ELSE Split(part[t], el)
            IN  /\ part' = [part EXCEPT ![t] = sp[2]]
                /\ IF sp[1] = <<>>
                   THEN /\ Goto(t, loc[t].aret) /\ UNCHANGED <<bat, loc>>
                   ELSE BeginEmit(t, sp[1], el)
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, orphans, helpers, slowc, req, res,
                   tag, dang, held, uaf, stalled, budget, bnd>>

\* Push one list node onto the next candidate slot if it is still active with
\* an era >= the batch's minimum birth (CAS on the list head).
PushOne(t) ==
    /\ pc[t] = "push"
    /\ loc[t].cands # {}
    /\ LET sl == CHOOSE sl \in loc[t].cands : TRUE IN
         LET u == sl[1]
             k == sl[2]
             ok == slot[u][k].act /\ slot[u][k].era >= bat[loc[t].c].min
         IN  /\ slot' = IF ok THEN [slot EXCEPT ![u][k].list = @ \cup {loc[t].c}] ELSE slot
             /\ SetLoc(t, [loc[t] EXCEPT !.cands = @ \ {sl},
                                         !.k = IF ok THEN @ + 1 ELSE @])
    /\ UNCHANGED <<G, root, nst, birth, nxt, pub, bat, part, orphans, helpers, slowc, req,
                   res, tag, pc, dang, held, uaf, stalled, budget, bnd>>

\* refs.fetch_add(k): reaching 0 here finishes the batch. Then the next batch
\* of the split (its set-up merged: owner-only), or return.
AddRefs(t) ==
    /\ pc[t] = "push"
    /\ loc[t].cands = {}
    /\ LET c  == loc[t].c
           b1 == [bat EXCEPT ![c].refs = @ + loc[t].k]
           C  == IF loc[t].emits = <<>> THEN {} ELSE Head(loc[t].emits)
           c2 == IF C = {} THEN 0 ELSE MinId(C)
           b2 == IF C = {} THEN b1
                 ELSE [b1 EXCEPT ![c2] = [nodes |-> C, min |-> MinBirth(C), refs |-> 0]]
       IN  /\ IF b1[c].refs = 0 THEN Finish(c, b2) ELSE NoFinish(b2)
           /\ IF C = {}
              THEN /\ Goto(t, loc[t].aret) /\ UNCHANGED loc
              ELSE /\ SetLoc(t, [loc[t] EXCEPT !.emits = Tail(@), !.c = c2, !.k = 0,
                                     !.cands = {<<v[1], v[2]>> : v \in AtLeast(loc[t].el,
                                                                         MinBirth(C))}])
                   /\ Goto(t, "push")
    /\ UNCHANGED <<G, root, birth, nxt, slot, pub, part, helpers, slowc, req, res, tag,
                   held, stalled, budget, bnd>>

---------------------------------------------------------------------------
(* leave(): detach the main list, then walk it (traverse) *)

Unpin(t) ==
    /\ pc[t] = "unpin"
    /\ SetLoc(t, [loc[t] EXCEPT !.walk = slot[t]["m"].list, !.wret = "idle"])
    /\ slot' = [slot EXCEPT ![t]["m"].act = FALSE, ![t]["m"].list = {}]
    /\ held' = [held EXCEPT ![t] = {}]
    /\ Goto(t, "walk")
    /\ UNCHANGED <<G, root, nst, birth, nxt, pub, bat, part, orphans, helpers, slowc, req,
                   res, tag, dang, uaf, stalled, budget, bnd>>

\* One decrement; whoever takes a count from 1 to 0 finishes the batch.
WalkOne(t) ==
    /\ pc[t] = "walk"
    /\ loc[t].walk # {}
    /\ LET c  == CHOOSE x \in loc[t].walk : TRUE
           b1 == [bat EXCEPT ![c].refs = @ - 1]
       IN  /\ IF bat[c].refs = 1 THEN Finish(c, b1) ELSE NoFinish(b1)
           /\ SetLoc(t, [loc[t] EXCEPT !.walk = @ \ {c}])
    /\ UNCHANGED <<G, root, birth, nxt, slot, pub, part, helpers, slowc, req, res, tag, pc,
                   held, stalled, budget, bnd>>

\* End of the walk: back to idle, or (helper) helpers_active -= 1.
WalkDone(t) ==
    /\ pc[t] = "walk"
    /\ loc[t].walk = {}
    /\ IF loc[t].wret = "hdone"
       THEN /\ helpers' = helpers - 1 /\ Goto(t, "hnext")
       ELSE /\ Goto(t, loc[t].wret) /\ UNCHANGED helpers
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, part, orphans, slowc,
                   req, res, tag, loc, dang, held, uaf, stalled, budget, bnd>>

---------------------------------------------------------------------------
(* advance_era with helping (help) *)

\* if g_slow_counter != 0: help every other record in use; then G += 1.
Adv(t) ==
    /\ pc[t] = "adv"
    /\ IF slowc = 0 \/ NoHelping
       THEN /\ Goto(t, "advinc") /\ UNCHANGED loc
       ELSE /\ SetLoc(t, [loc[t] EXCEPT !.todo = {u \in Threads \ {t} :
                                                 pc[u] \notin {"exited"}}])
            /\ Goto(t, "hnext")
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, part, orphans, helpers, slowc,
                   req, res, tag, dang, held, uaf, stalled, budget, bnd>>

HPending(t) == res[loc[t].r] = [ptr |-> Pending, tag |-> loc[t].htag]

\* help(r): {src, tag} := dwload(request); if dwload(result) == {PENDING, tag}:
\* helpers_active += 1. One step: request and result are published in one
\* step (Slow0) and a result only leaves {PENDING, tag}, so reading the result
\* later can only make the code skip a request this step may help; helping a
\* request completed meanwhile ends at the re-check (H4).
HNext(t) ==
    /\ pc[t] = "hnext"
    /\ IF loc[t].todo = {}
       THEN /\ Goto(t, "advinc") /\ UNCHANGED <<loc, dang, helpers>>
       ELSE LET r == CHOOSE u \in loc[t].todo : TRUE
                pend == res[r] = [ptr |-> Pending, tag |-> req[r].tag]
            IN  /\ SetLoc(t, [loc[t] EXCEPT !.todo = @ \ {r}, !.r = r,
                                            !.hsrc = req[r].src, !.htag = req[r].tag])
                /\ dang' = [dang EXCEPT ![t].hpar = dang[r].reqpar]
                /\ helpers' = IF pend THEN helpers + 1 ELSE helpers
                /\ Goto(t, IF pend THEN "hera" ELSE "hnext")
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, part, orphans, slowc,
                   req, res, tag, held, uaf, stalled, budget, bnd>>

\* r.main.era.load() (the era the helper slot will publish).
HEra(t) ==
    /\ pc[t] = "hera"
    /\ SetLoc(t, [loc[t] EXCEPT !.hera = slot[loc[t].r]["m"].era])
    /\ Goto(t, "h3")
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, part, orphans, helpers, slowc,
                   req, res, tag, dang, held, uaf, stalled, budget, bnd>>

\* helper.era := that era; helper.list := empty (active); fence X.
H3(t) ==
    /\ pc[t] = "h3"
    /\ slot' = [slot EXCEPT ![t]["h"] = [act |-> TRUE, era |-> loc[t].hera, list |-> {}]]
    /\ Goto(t, "h4")
    /\ UNCHANGED <<G, root, nst, birth, nxt, pub, bat, part, orphans, helpers, slowc, req,
                   res, tag, loc, dang, held, uaf, stalled, budget, bnd>>

\* The re-check after publishing: if dwload(result) == {PENDING, tag}, loop.
H4(t) ==
    /\ pc[t] = "h4"
    /\ Goto(t, IF ~NoHelperRecheck /\ ~HPending(t) THEN "hout" ELSE "he")
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, part, orphans, helpers, slowc,
                   req, res, tag, loc, dang, held, uaf, stalled, budget, bnd>>

\* Loop head: e := G.load().
HE(t) ==
    /\ pc[t] = "he"
    /\ SetLoc(t, [loc[t] EXCEPT !.he = G])
    /\ Goto(t, "hraise")
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, part, orphans, helpers, slowc,
                   req, res, tag, dang, held, uaf, stalled, budget, bnd>>

\* raise(r.main.era, e) -- e as read, G may have passed it -- then fence X.
\* The mutation NoRaise leaves the fence alone.
HRaise(t) ==
    /\ pc[t] = "hraise"
    /\ slot' = IF NoRaise THEN slot
               ELSE [slot EXCEPT ![loc[t].r]["m"].era = Max(@, loc[t].he)]
    /\ Goto(t, "hld")
    /\ UNCHANGED <<G, root, nst, birth, nxt, pub, bat, part, orphans, helpers, slowc, req,
                   res, tag, loc, dang, held, uaf, stalled, budget, bnd>>

\* p := src->load(): dereferences the node holding src (the parent problem).
HLd(t) ==
    /\ pc[t] = "hld"
    /\ uaf' = (uaf \/ (loc[t].hsrc # 0 /\ (dang[t].hpar \/ nst[loc[t].hsrc] = "free")))
    /\ SetLoc(t, [loc[t] EXCEPT !.hp = SrcVal(loc[t].hsrc)])
    /\ dang' = [dang EXCEPT ![t].hp = FALSE]
    /\ Goto(t, "hg")
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, part, orphans, helpers, slowc,
                   req, res, tag, held, stalled, budget, bnd>>

\* g := G.load(); g == e: go and CAS the result; else go and re-check it.
HG(t) ==
    /\ pc[t] = "hg"
    /\ Goto(t, IF G = loc[t].he THEN "hcas" ELSE "hres")
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, part, orphans, helpers, slowc,
                   req, res, tag, loc, dang, held, uaf, stalled, budget, bnd>>

\* dwcas(r.result, {PENDING, tag} -> {p, tag}); break.
HCas(t) ==
    /\ pc[t] = "hcas"
    /\ LET r == loc[t].r IN
       IF HPending(t)
       THEN /\ res' = [res EXCEPT ![r].ptr = loc[t].hp]
            /\ dang' = [dang EXCEPT ![r].res = dang[t].hp]
       ELSE UNCHANGED <<res, dang>>
    /\ Goto(t, "hout")
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, part, orphans, helpers, slowc,
                   req, tag, loc, held, uaf, stalled, budget, bnd>>

\* if dwload(r.result) != {PENDING, tag}: break; else loop.
HRes(t) ==
    /\ pc[t] = "hres"
    /\ Goto(t, IF HPending(t) THEN "he" ELSE "hout")
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, part, orphans, helpers, slowc,
                   req, res, tag, loc, dang, held, uaf, stalled, budget, bnd>>

\* Detach the helper list and walk it; then helpers_active -= 1.
HOut(t) ==
    /\ pc[t] = "hout"
    /\ SetLoc(t, [loc[t] EXCEPT !.walk = slot[t]["h"].list, !.wret = "hdone"])
    /\ slot' = [slot EXCEPT ![t]["h"].act = FALSE, ![t]["h"].list = {}]
    /\ Goto(t, "walk")
    /\ UNCHANGED <<G, root, nst, birth, nxt, pub, bat, part, orphans, helpers, slowc, req,
                   res, tag, dang, held, uaf, stalled, budget, bnd>>

\* An allocation whose node is never published (Atom::compare_exchange deletes
\* its fresh node when the CAS fails): on_allocate advances the era, helping.
Bump(t) ==
    /\ UseBump
    /\ pc[t] = "idle" /\ CanSpend(t) /\ Spend(t)
    /\ SetLoc(t, [loc[t] EXCEPT !.ax = 0])
    /\ Goto(t, "adv")
    /\ UNCHANGED <<G, root, nst, birth, nxt, slot, pub, bat, part, orphans, helpers, slowc,
                   req, res, tag, dang, held, uaf, stalled, bnd>>

\* G += 1, then the node is built (birth) and pushed.
AdvInc(t) ==
    /\ pc[t] = "advinc"
    /\ G' = IF G < MaxEra THEN G + 1 ELSE G
    /\ IF loc[t].ax = 0
       THEN UNCHANGED <<birth, nxt, root, bnd>>
       ELSE LinkOps(loc[t].ax, IF G < MaxEra THEN G + 1 ELSE G)
    /\ Goto(t, "idle")
    /\ UNCHANGED <<nst, slot, pub, bat, part, orphans, helpers, slowc, req,
                   res, tag, loc, dang, held, uaf, stalled, budget>>

---------------------------------------------------------------------------
Step(t) ==
    /\ Active(t)
    /\ \/ StartRead(t) \/ StartPush(t) \/ Bump(t) \/ StartFlush(t) \/ Exit(t)
       \/ Register(t) \/ Quit(t) \/ LdRead(t) \/ LdCheck(t) \/ FRaise(t)
       \/ Slow0(t) \/ SlowRead(t) \/ SlowG(t) \/ SlowCheck(t) \/ SlowRes(t) \/ SlowEnd(t)
       \/ Cas(t) \/ Scan(t) \/ PushOne(t) \/ AddRefs(t)
       \/ Unpin(t) \/ WalkOne(t) \/ WalkDone(t)
       \/ Adv(t) \/ HNext(t) \/ HEra(t) \/ H3(t) \/ H4(t) \/ HE(t) \/ HRaise(t) \/ HLd(t)
       \/ HG(t) \/ HCas(t) \/ HRes(t) \/ HOut(t) \/ AdvInc(t)

Next == \E t \in Threads : Step(t) \/ Stall(t)

Spec == Init /\ [][Next]_vars

\* Every thread keeps taking steps (no stalls in the liveness configurations).
FairSpec == Spec /\ \A t \in Threads : WF_vars(Step(t))

\* State fingerprint for the safety configurations: the locals of a thread
\* that is idle, exited or done are dead (every operation sets the ones it
\* reads), so they are left out.
Quiet(t) == pc[t] \in {"idle", "exited", "done"}
View == <<G, root, nst, birth, nxt, slot, pub, bat, part, orphans, helpers, slowc,
          req, res, tag, pc,
          [t \in Threads |-> IF Quiet(t) THEN InitLoc ELSE loc[t]],
          [t \in Threads |-> IF Quiet(t) THEN [dang[t] EXCEPT !.lp = FALSE, !.hp = FALSE,
                                                              !.hpar = FALSE]
                                        ELSE dang[t]],
          held, uaf, stalled, budget, bnd>>

\* Budgets used by the configurations.
Budget23 == [t \in Threads |-> IF t = 1 THEN 2 ELSE 3]
Budget12 == [t \in Threads |-> IF t = 1 THEN 1 ELSE 2]
Budget14 == [t \in Threads |-> IF t = 1 THEN 1 ELSE 4]
Budget15 == [t \in Threads |-> IF t = 1 THEN 1 ELSE 5]

---------------------------------------------------------------------------
(* Properties *)

\* No node is freed while a thread holds it, no returned pointer or helper
\* dereference touches a node freed since it was read.
NoUseAfterFree == ~uaf

\* A node held under a guard is never free (the same, stated on the state).
HeldAreLive == \A t \in Threads : \A x \in held[t] : nst[x] # "free"

\* Invariant I3: a batch is in a slot list at most once (lists are sets here)
\* and only active slots hold batches.
InactiveHoldNothing ==
    \A t \in Threads, k \in Kinds : ~slot[t][k].act => slot[t][k].list = {}

\* Invariant 1: slot eras never exceed G.
ErasBounded == \A t \in Threads, k \in Kinds : slot[t][k].era <= G

(***************************************************************************)
(* Wait-freedom of the slow path, with n = |Threads|. After the request is *)
(* published (Slow0, which raises slow_counter), an era increment either   *)
(* comes from an advance_era call that read slow_counter before that       *)
(* (at most one per other thread: its next call reads it after), or from   *)
(* one that helped this request to completion first. A failed iteration    *)
(* means G moved between two of the requester's reads of G (or, for the    *)
(* first one, since the era it entered with). So: the first failure, at    *)
(* most n - 1 failures caused by unhelped increments, and at most one      *)
(* caused by a helped increment -- after which the requester's re-check    *)
(* sees the result and leaves. Failed iterations <= n + 1; steps: 1        *)
(* (publish) + 4 per failed iteration that continues (read, G, raise,      *)
(* re-check; at most n of them) + 4 for the last iteration = 4n + 5. None  *)
(* of this depends on MaxEra: the wait-freedom configurations let G move   *)
(* far enough that an unhelped requester exceeds it.                       *)
(***************************************************************************)
SlowBound == N + 1
SlowStepBound == 4 * N + 5
SlowPathBounded == \A t \in Threads : loc[t].fails <= SlowBound
SlowStepsBounded == \A t \in Threads : loc[t].ss <= SlowStepBound

\* The memory bound of docs/RECLAIMER.md. With thread bnd.t stalled at era E:
\* nodes in batches attached to its slots <= (M + F) * B, where M = nodes
\* not yet freed at the stall (alive, or retired but not freed: a node retired
\* just before the stall can still be attached to the stalled slot after it,
\* so "alive" must mean "not freed" here), F = nodes allocated after it with
\* birth <= E, and
\* B = the largest batch: a non-forced attach needs |eligible| + 1 nodes and
\* happens on every retire here, so B <= 2 * |Threads| + 1 (padding aside).
BatchB == 2 * Cardinality(Threads) + 1
HeldByStalled ==
    UNION {bat[c].nodes : c \in UNION {slot[bnd.t][k].list : k \in Kinds}}
MemoryBound ==
    bnd.on => Cardinality(HeldByStalled) <= (bnd.m + bnd.f) * BatchB
\* The step of the proof the bound rests on: every batch attached to a
\* stalled slot has a node born at or before that slot's era.
StalledHoldsOnlyOld ==
    bnd.on => \A k \in Kinds : \A c \in slot[bnd.t][k].list :
                 bat[c].min <= slot[bnd.t][k].era

AllDone == \A t \in Threads : pc[t] = "done"
NothingRetired == \A x \in Nodes : nst[x] # "ret"

\* Liveness: once every thread has left (flushed and stopped), every retired
\* node is freed.
AllFreedEventually == AllDone ~> NothingRetired
\* Liveness: a slow-path load completes.
SlowPcs == {"sld", "sg", "schk", "sres", "send"}
SlowPathCompletes == \A t \in Threads : (pc[t] \in SlowPcs) ~> (pc[t] \notin SlowPcs)
\* ... and every thread gets to the end.
Terminates == <>AllDone
=============================================================================
