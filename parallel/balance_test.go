package parallel

import "testing"

// simulateBalance runs calls of a ring of two in which this rank computes at a
// seconds per unit of work and the next at b, and returns the blocks given
// after each call.
func simulateBalance(b *Balancer, work []float64, speed func(call int) (a, bn float64), calls int) []int {
	var total float64
	cum := []float64{0}
	for _, w := range work {
		total += w
		cum = append(cum, total)
	}
	var gives []int
	for call := 1; call <= calls; call++ {
		g := b.rowsToGive(call, true, work, 512, true) / 512
		a, bn := speed(call)
		b.record(call, true, a*(total-cum[g]))
		b.report(call, true, pace{busy: bn * (total + cum[g]), work: total + cum[g]})
		gives = append(gives, b.kinds[1].give)
	}
	return gives
}

// TestBalancerEvensTimes: the blocks a rank gives settle where both ranks'
// computing times are nearest to even, weighing blocks by their work, and
// follow a change of speed back.
func TestBalancerEvensTimes(t *testing.T) {
	uniform := make([]float64, 16)
	rising := make([]float64, 16) // like a zigzag shard: later blocks see more keys
	for i := range uniform {
		uniform[i], rising[i] = 1, float64(i+1)
	}
	steady := func(a, bn float64) func(int) (float64, float64) {
		return func(int) (float64, float64) { return a, bn }
	}
	cases := []struct {
		name  string
		work  []float64
		speed func(call int) (a, bn float64)
		want  int // blocks given at the end
	}{
		{"even speeds: nothing moves", uniform, steady(1, 1), 0},
		{"within 2%: nothing moves", uniform, steady(1.015, 1), 0},
		{"this rank 20% slower: 16*0.2/2.2 = 1.45 blocks", uniform, steady(1.2, 1), 1},
		{"this rank 50% slower: 16*0.5/2.5 = 3.2 blocks", uniform, steady(1.5, 1), 3},
		{"blocks weighed by work: 136*0.3/2.3 = 17.7 units, 5 blocks (15)", rising, steady(1.3, 1), 5},
		{"the next rank slower: this one gives nothing (the next gives)", uniform, steady(1, 1.3), 0},
		{"all blocks but one at most", uniform, steady(100, 1), 15},
		{"the slow core recovers: the blocks come back", uniform, func(call int) (float64, float64) {
			if call <= 10 {
				return 1.5, 1
			}
			return 1, 1
		}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b Balancer
			gives := simulateBalance(&b, tc.work, tc.speed, 24)
			if got := gives[len(gives)-1]; got != tc.want {
				t.Fatalf("gives %d blocks after 24 calls, want %d (after each call: %v)", got, tc.want, gives)
			}
			if c := b.Stats().Changes; c > 4 {
				t.Errorf("%d changes in 24 calls: it swings (%v)", c, gives)
			}
			t.Logf("blocks given after each call: %v", gives)
		})
	}
}

// TestBalancerIgnoresStaleAndMutual: a report of a call made before the last
// change is not judged, and in a ring of two a rank given blocks gives none back.
func TestBalancerIgnoresStaleAndMutual(t *testing.T) {
	work := []float64{1, 1, 1, 1, 1, 1, 1, 1}
	var b Balancer
	for call := 1; call <= 2; call++ { // this rank twice as slow: 8*1/3 = 2.7 blocks
		b.rowsToGive(call, true, work, 512, true)
		b.record(call, true, 16)
		b.report(call, true, pace{busy: 8, work: 8})
	}
	if b.kinds[1].give != 3 {
		t.Fatalf("gives %d blocks, want 3", b.kinds[1].give)
	}
	b.rowsToGive(3, true, work, 512, true)
	b.record(3, true, 100)
	b.report(1, true, pace{busy: 1, work: 8}) // stale: made with 0 blocks given
	b.report(2, true, pace{busy: 1, work: 8})
	if b.kinds[1].give != 3 {
		t.Fatalf("gives %d blocks after stale reports, want 3", b.kinds[1].give)
	}

	var m Balancer
	for call := 1; call <= 4; call++ {
		m.rowsToGive(call, true, work, 512, true)
		m.took(true, 512, 1) // the next rank gives a block here
		m.record(call, true, 16)
		m.report(call, true, pace{busy: 8, work: 8})
	}
	if m.kinds[1].give != 0 {
		t.Fatalf("a rank given blocks gives %d back, want 0", m.kinds[1].give)
	}
}

// TestBalancerFixed: a fixed policy is clamped to all blocks but one and
// ignores reports.
func TestBalancerFixed(t *testing.T) {
	b := Balancer{Fixed: func(call int, _ bool) int { return call }}
	work := []float64{1, 2, 3, 4, 5, 6, 3} // 65 rows in blocks of 10: the last of 5
	for call, want := range []int{0, 10, 20, 30, 40, 50, 60, 60} {
		b.record(call, false, 1)
		b.report(call, false, pace{busy: 100, work: 1})
		if got := b.rowsToGive(call, false, work, 10, false); got != want {
			t.Errorf("call %d: %d rows, want %d", call, got, want)
		}
	}
	if s := b.Stats(); s.FwdGiven != 270 || s.Changes != 0 || s.Calls != 8 {
		t.Errorf("stats %+v: want 270 rows given in 8 calls, no changes", s)
	}
}

// TestBalancerHold: held, a rank gives nothing and decides nothing; released,
// it gives what it had learnt.
func TestBalancerHold(t *testing.T) {
	work := []float64{1, 1, 1, 1, 1, 1, 1, 1}
	var b Balancer
	for call := 1; call <= 2; call++ { // this rank twice as slow: 3 blocks
		b.rowsToGive(call, true, work, 512, true)
		b.record(call, true, 16)
		b.report(call, true, pace{busy: 8, work: 8})
	}
	b.Hold(true)
	for call := 3; call <= 6; call++ {
		if rows := b.rowsToGive(call, true, work, 512, true); rows != 0 {
			t.Fatalf("held, call %d gives %d rows", call, rows)
		}
		b.record(call, true, 8)
		b.report(call, true, pace{busy: 80, work: 8}) // the next rank now far slower: no decision while held
	}
	b.Hold(false)
	if rows := b.rowsToGive(7, true, work, 512, true); rows != 3*512 {
		t.Fatalf("released, gives %d rows, want %d", rows, 3*512)
	}
}
