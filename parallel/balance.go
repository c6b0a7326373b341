package parallel

import (
	"math"
	"sync"
)

// Balancer moves attention work from a rank to the next one in its ring when
// the next one computes faster. Ranks hold equal shares of every sequence
// (zigzag), so the step is balanced only while their cores run equally fast;
// on a shared machine one vCPU is often 10-30% slower than another for
// minutes, and the faster rank's time goes into waiting for it.
//
// What moves is the head of a rank's query blocks, the blocks whose queries see
// the fewest keys (under zigzag sharding a shard's later rows sit later in the
// sequence), so a move can be small: the next rank computes their attention
// (forward: the online softmax over every key block, in the owner's order;
// backward: dq, and their dk, dv partials summed onto the owner's in
// model.GradParts.SumOnto's order) and sends the results back. Every sum keeps
// its order, so the results are bitwise those of an unbalanced step however
// many blocks move; the balancer can react to timing without making training
// depend on it.
//
// After each ring attention call every rank tells the previous one how long it
// computed (the call's time less its waits) and how much work that was (the
// keys its queries saw, its own and those taken; a "pace" report). From both
// ranks' seconds per unit of work (moving averages: one call's times are
// noisy), a rank computes the work to hand over that evens their times, every
// second call, and gives the number of head blocks whose work is nearest to it. Forward and backward are balanced apart.
// Each rank decides only about its own blocks, from reports of calls made with
// its current setting, so settings do not swing on stale reports; in a ring of
// two, a rank given blocks gives none back (the other gives less first).
type Balancer struct {
	// Fixed, when set, is the number of query blocks to give at each call
	// (tests); the reports are then ignored.
	Fixed func(call int, backward bool) int

	mu    sync.Mutex
	held  bool // Hold: give nothing for now
	calls int  // the last call started
	kinds [2]balanceState
	stats BalanceStats
}

// pace is what a rank did in one call: seconds computing, and the work done.
type pace struct{ busy, work float64 }

type balanceState struct {
	give   int          // query blocks to give to the next rank
	given  int          // query blocks given at the latest call (give, unless held or fixed)
	cum    []float64    // the work of the first j query blocks, j = 0..nb (blockWork)
	since  int          // the first call made with give as it is
	taken  float64      // work taken from the previous rank at the latest call
	mutual bool         // the next rank is also the previous one (a ring of two)
	own    map[int]pace // this rank's, by call
	next   map[int]pace // the next rank's, by call, when it came first
	a, b   float64      // seconds per unit of work here and at the next rank (moving averages)
	judged int          // calls judged since the last decision
}

// BalanceStats count what the balancer did; the bytes it moved follow from them
// and the model's shape.
type BalanceStats struct {
	Calls              int64 // ring attention calls (each sends a header and a pace report)
	FwdGiven, FwdTaken int64 // query rows computed by the next rank / for the previous one, forward
	BwdGiven, BwdTaken int64 // the same, backward
	BwdGivingCalls     int64 // backward calls that gave rows (their key/value gradient sums travel in two parts)
	Changes            int64 // adjustments made
}

const (
	// balanceEven is the difference in computing time, as a share of the
	// two ranks' mean, below which they count as even.
	balanceEven = 0.02
	// balanceCalls is how many calls with the current setting are judged
	// before each decision.
	balanceCalls = 2
	// balanceSmooth is the weight of a call in the moving averages of speed.
	balanceSmooth = 0.3
)

// Hold stops (true) or resumes (false) giving, keeping what was learnt; every
// rank of a ring must hold at the same calls. Benchmarks use it to time
// balanced and unbalanced steps side by side.
func (b *Balancer) Hold(held bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held != held {
		b.held = held
		for i := range b.kinds { // judge only calls made from now on
			b.kinds[i].since = b.calls + 1
			b.kinds[i].judged = 0
		}
	}
}

// Stats are the counts so far. Safe for concurrent use; nil gives zeros.
func (b *Balancer) Stats() BalanceStats {
	if b == nil {
		return BalanceStats{}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats
}

// state is the balancing of forward or backward calls (b.mu held).
func (b *Balancer) state(backward bool) *balanceState {
	k := &b.kinds[0]
	if backward {
		k = &b.kinds[1]
	}
	if k.own == nil {
		k.own, k.next = map[int]pace{}, map[int]pace{}
	}
	return k
}

// rowsToGive starts call and returns how many of the shard's query rows the
// next rank computes: whole blocks of blockQ rows from the start, all but one at
// most. work is each block's work; mutual says the next rank is also the
// previous one.
func (b *Balancer) rowsToGive(call int, backward bool, work []float64, blockQ int, mutual bool) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = call
	b.stats.Calls++
	nb := len(work)
	k := b.state(backward)
	k.mutual, k.taken = mutual, 0
	k.cum = append(k.cum[:0], 0)
	for _, w := range work {
		k.cum = append(k.cum, k.cum[len(k.cum)-1]+w)
	}
	give := k.give
	switch {
	case b.held:
		give = 0
	case b.Fixed != nil:
		give = b.Fixed(call, backward)
	}
	give = max(0, min(give, nb-1))
	k.given = give
	if give == 0 {
		return 0
	}
	rows := give * blockQ
	if backward {
		b.stats.BwdGiven += int64(rows)
		b.stats.BwdGivingCalls++
	} else {
		b.stats.FwdGiven += int64(rows)
	}
	return rows
}

// took counts rows (of that much work) computed for the previous rank this call.
func (b *Balancer) took(backward bool, rows int, work float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.state(backward).taken = work
	if backward {
		b.stats.BwdTaken += int64(rows)
	} else {
		b.stats.FwdTaken += int64(rows)
	}
}

// record keeps this rank's seconds computing in call and returns what to report:
// those seconds and the work done (its blocks not given, and those taken).
func (b *Balancer) record(call int, backward bool, busy float64) pace {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.state(backward)
	var p pace
	if nb := len(k.cum) - 1; nb >= 1 {
		p = pace{busy: busy, work: k.cum[nb] - k.cum[k.given] + k.taken}
	}
	k.own[call] = p
	for c := range k.own { // older calls are no longer wanted
		if c < call-16 {
			delete(k.own, c)
			delete(k.next, c)
		}
	}
	if next, ok := k.next[call]; ok { // the next rank's report came first
		delete(k.next, call)
		b.judge(k, call, p, next)
	}
	return p
}

// report takes the next rank's pace in call.
func (b *Balancer) report(call int, backward bool, next pace) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.state(backward)
	own, ok := k.own[call]
	if !ok {
		k.next[call] = next // judged when this rank's own is recorded
		return
	}
	b.judge(k, call, own, next)
}

// judge adjusts what this rank gives from both ranks' pace in call.
func (b *Balancer) judge(k *balanceState, call int, own, next pace) {
	if b.Fixed != nil || !(own.work > 0 && next.work > 0 && own.busy > 0 && next.busy > 0) ||
		math.IsInf(next.busy+next.work, 0) {
		return // not ours to judge, or nothing to judge by (or a report that makes no sense)
	}
	// Seconds per unit of work are properties of the two cores, steady over
	// many calls while one call's times are noisy (a collection, a message
	// being decoded): follow them with a moving average, reports of any setting.
	a, bn := own.busy/own.work, next.busy/next.work
	if k.a == 0 {
		k.a, k.b = a, bn
	} else {
		k.a += balanceSmooth * (a - k.a)
		k.b += balanceSmooth * (bn - k.b)
	}
	if call < k.since || b.held {
		return // made before the last change (its work is not what is given now), or held
	}
	if k.judged++; k.judged < balanceCalls {
		return
	}
	k.judged = 0
	// Handing over x units evens the times when a(W - x) = b(V + x).
	mine, theirs := k.a*own.work, k.b*next.work
	if math.Abs(mine-theirs) <= balanceEven*(mine+theirs)/2 {
		return
	}
	x := (mine - theirs) / (k.a + k.b)
	if x > 0 && k.mutual && k.taken > 0 {
		return // the next rank gives to this one: it gives less first
	}
	nb := len(k.cum) - 1
	target := k.cum[min(k.give, nb)] + x
	give := 0
	for j := range nb { // all but the last block may go
		if math.Abs(k.cum[j]-target) < math.Abs(k.cum[give]-target) {
			give = j
		}
	}
	if give != k.give {
		k.give = give
		k.since = b.calls + 1 // reports of calls before it say nothing of the new setting
		b.stats.Changes++
	}
}
