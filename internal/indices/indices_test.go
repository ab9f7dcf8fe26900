package indices

import "testing"

func TestFirstInvalid(t *testing.T) {
	var m Marks
	for _, c := range []struct {
		idx   []int
		batch int
		want  int
	}{
		{nil, 4, -1},
		{[]int{3, 0, 2}, 4, -1},
		{[]int{1, 4}, 4, 1},
		{[]int{-1}, 4, 0},
		{[]int{2, 1, 2, 0}, 4, 2},
		{[]int{0, 1, 2, 3, 4, 5, 6, 7}, 8, -1},
	} {
		if got := m.FirstInvalid(c.idx, c.batch); got != c.want {
			t.Errorf("FirstInvalid(%v, %d) = %d, want %d", c.idx, c.batch, got, c.want)
		}
		for i, s := range m.seen {
			if s {
				t.Fatalf("after %v: mark %d left set", c.idx, i)
			}
		}
	}
	if n := testing.AllocsPerRun(10, func() { m.FirstInvalid([]int{5, 1, 5}, 8) }); n != 0 {
		t.Errorf("%v allocations with a batch seen before", n)
	}
}
