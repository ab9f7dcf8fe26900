//go:build opencl

package opencl

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/jgillich/go-opencl/cl"
)

func TestPatchPTX(t *testing.T) {
	ptx := []byte(".version 9.0\n.target sm_90\n.entry a(\n.param .u32 a_0\n)\n.reqntid 16, 16, 1\n{\nret;\n}\n" +
		".entry fisher_pxt(\n.param .u32 p_0\n)\n.reqntid 16, 16, 1\n{\nret;\n}\n" +
		".entry fisher_tx(\n.param .u32 t_0\n)\n{\nret;\n}\n")
	out, ok := patchPTX(ptx, ".maxnreg 128", productEntries...)
	if !ok {
		t.Fatal("not patched")
	}
	want := bytes.Replace(ptx, []byte("16, 16, 1\n{\nret;\n}\n.entry fisher_tx"), []byte("16, 16, 1\n.maxnreg 128\n{\nret;\n}\n.entry fisher_tx"), 1)
	want = bytes.Replace(want, []byte("t_0\n)\n{"), []byte("t_0\n)\n.maxnreg 128\n{"), 1)
	if !bytes.Equal(out, want) {
		t.Errorf("patched:\n%s\nwant:\n%s", out, want)
	}
	if _, ok := patchPTX([]byte("\x7fELF binary"), ".maxnreg 128", productEntries...); ok {
		t.Error("patched a binary that is not PTX")
	}
	if _, ok := patchPTX(ptx[:bytes.Index(ptx, []byte(".entry fisher_tx"))], ".maxnreg 128", productEntries...); ok {
		t.Error("patched PTX without fisher_tx")
	}
	for _, c := range []struct{ env, dir string }{{"", ""}, {"0", ""}, {"128", ".maxnreg 128"}, {"cta2", ".minnctapersm 2"}} {
		t.Setenv(PTXRegEnv, c.env)
		if d, err := ptxDirective(); err != nil || d != c.dir {
			t.Errorf("%s=%q: %q, %v; want %q", PTXRegEnv, c.env, d, err, c.dir)
		}
	}
	t.Setenv(PTXRegEnv, "ctax")
	if _, err := ptxDirective(); err == nil {
		t.Error("ctax accepted")
	}
}

// TestRebuildFromBinary builds the kernels, rebuilds them from their own
// binary (the path a PTX directive takes) and runs pxt_reduce from the
// rebuilt program.
func TestRebuildFromBinary(t *testing.T) {
	e := testEngine(t)
	d := e.dev
	tl := d.tiles
	prog, err := d.ctx.CreateProgramWithSource([]string{kernelSource})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Release()
	opts := fmt.Sprintf("-cl-std=CL1.2 -DTM=%d -DTN=%d -DTK=%d -DWM=%d -DWN=%d -DRL=%d", tl.TM, tl.TN, tl.TK, tl.WM, tl.WN, tl.RL)
	if err := prog.BuildProgram([]*cl.Device{d.dev}, opts); err != nil {
		t.Fatal(err)
	}
	ok, err := rebuildFromBinary(d.ctx, d.dev, prog, opts, func(b []byte) ([]byte, bool) { return b, true })
	if err != nil || !ok {
		t.Fatalf("rebuild: %v, %v", ok, err)
	}
	k, err := prog.CreateKernel("pxt_reduce")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Release()
	const n4, S = 16, 3
	tp := make([]float32, 4*n4*S)
	wt := make([]float32, 4*n4)
	for i := range tp {
		tp[i] = float32(i%7) - 2
	}
	for i := range wt {
		wt[i] = float32(i%5) * 0.5
	}
	var bufs []*cl.MemObject
	for _, n := range []int{len(tp), len(wt), len(wt)} {
		b, err := d.ctx.CreateEmptyBuffer(cl.MemReadWrite, 4*n)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Release()
		bufs = append(bufs, b)
	}
	for i, h := range [][]float32{tp, wt} {
		ev, err := e.queue.EnqueueWriteBufferFloat32(bufs[i], true, 0, h, nil)
		release(ev)
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := setArgs(k, "pxt_reduce", bufs[0], bufs[1], bufs[2], S, n4); err != nil {
		t.Fatal(err)
	}
	if err := e.launch(k, "pxt_reduce", []int{64}, []int{64}); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, 4*n4)
	ev, err := e.queue.EnqueueReadBufferFloat32(bufs[2], true, 0, got, nil)
	release(ev)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		v := tp[i]
		for s := 1; s < S; s++ {
			v += tp[s*4*n4+i]
		}
		if want := v * wt[i]; got[i] != want {
			t.Fatalf("T[%d] = %v, want %v", i, got[i], want)
		}
	}
}
