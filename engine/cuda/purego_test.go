package cuda

import (
	"testing"
	"unsafe"

	"github.com/ebitengine/purego"

	"whet/engine/internal/cctest"
)

// TestWideCallsReachC calls C functions with the signatures of
// cuLaunchKernel (11 arguments) and cublasLtMatmul (16) through purego, as
// the backend does, and has C check every argument. It needs no GPU: the
// library is built from testdata/wideargs.c with $CC (tools/arm64 sets the
// arm64 cross compiler, so this runs for linux/arm64 under emulation),
// else gcc; it skips when neither is there.
func TestWideCallsReachC(t *testing.T) {
	so := cctest.SharedLib(t, "wideargs.c", "libwideargs.so")
	lib, err := openLibrary("the wide-argument test library", so)
	if err != nil {
		t.Fatal(err)
	}
	var launch, matmul uintptr
	if err := lib.bind(map[string]*uintptr{"fake_cuLaunchKernel": &launch, "fake_cublasLtMatmul": &matmul}); err != nil {
		t.Fatal(err)
	}
	p := func(n uint64) uintptr { return uintptr(0x1000000000000000 + n*0x0101010101) }

	// As launch.go passes them: dims and shared memory as uintptr of
	// 32-bit values, kernel parameters by address.
	i32, f32 := int32(-7), float32(1.5)
	params := []unsafe.Pointer{unsafe.Pointer(&i32), unsafe.Pointer(&f32)}
	gx, smem := uint32(0xfffffff1), uint32(0x80000000)
	r, _, _ := purego.SyscallN(launch, p(1), uintptr(gx), 2, 3, 256, 5, 6, uintptr(smem), p(9),
		uintptr(unsafe.Pointer(&params[0])), 0)
	if code := int32(uint32(r)); code != 0 {
		t.Errorf("cuLaunchKernel's stand-in saw argument %d wrong", code-100)
	}

	args := make([]uintptr, 16)
	for i := range args {
		args[i] = p(uint64(i + 1))
	}
	r, _, _ = purego.SyscallN(matmul, args...)
	if code := int32(uint32(r)); code != 0 {
		t.Errorf("cublasLtMatmul's stand-in saw argument %d wrong", code-100)
	}
}
