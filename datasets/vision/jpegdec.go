package vision

import (
	"errors"
	"fmt"
)

// A JPEG decoder that produces the samples libjpeg (libjpeg-turbo, under
// Pillow) produces: Huffman-coded baseline, extended and progressive
// frames, with libjpeg's default inverse DCT (jidctint.c, "ISLOW": 13-bit
// fixed-point constants, 2 extra bits between the column and row passes,
// and its range-limit table). Go's image/jpeg rounds its inverse DCT
// differently, which left decoded samples a level or three away from
// Pillow's. Anything this decoder does not handle (arithmetic coding,
// lossless or hierarchical frames, YCCK images, unusual sampling factors)
// returns errJPEGFallback and is decoded by image/jpeg instead.

var errJPEGFallback = errors.New("jpeg: left to image/jpeg")

// errJPEGArithmetic marks an arithmetic-coded JPEG, which Pillow reads
// (libjpeg-turbo decodes it) but neither this decoder nor image/jpeg does.
var errJPEGArithmetic = fmt.Errorf("%w: arithmetic-coded JPEG (whet reads Huffman-coded JPEGs; rewrite it losslessly with: jpegtran -optimize in.jpg > out.jpg)", ErrUnsupported)

// jpegNatural maps zigzag index to natural (row-major) position.
var jpegNatural = [64]int{
	0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
	12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
	35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
	58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
}

type huffTable struct {
	maxcode [18]int32 // per code length 1..16; -1 when none; [17] sentinel
	valptr  [17]int32
	mincode [17]int32
	vals    []uint8
}

func newHuffTable(counts [16]int, vals []uint8) (*huffTable, error) {
	t := &huffTable{vals: vals}
	code, k := int32(0), int32(0)
	for l := 1; l <= 16; l++ {
		n := int32(counts[l-1])
		t.valptr[l] = k
		t.mincode[l] = code
		code += n
		k += n
		if n > 0 {
			t.maxcode[l] = code - 1
		} else {
			t.maxcode[l] = -1
		}
		if code > 1<<l {
			return nil, fmt.Errorf("bad Huffman table")
		}
		code <<= 1
	}
	t.maxcode[17] = 1 << 30
	return t, nil
}

type jpegComp struct {
	id, h, v, tq int
	td, ta       int
	bw, bh       int     // blocks across and down, padded to whole MCUs
	coef         []int32 // bw·bh blocks of 64 coefficients, natural order
	pred         int32
}

type jpegDecoder struct {
	data        []byte
	pos         int
	qt          [4][64]int32 // natural order
	qtSet       [4]bool
	dc, ac      [4]*huffTable
	w, h        int
	comps       []jpegComp
	progressive bool
	ri          int
	adobe       bool
	transform   int
	jfif        bool
	hmax, vmax  int
	mcux, mcuy  int
	frame       bool

	bits    uint32
	nbits   int
	eobrun  int32
	scan    []int // component indices of the current scan
	ss, se  int
	ah, al  int
	hitMark bool
}

// jpegFrame is the decoded result: one sample plane per component.
type jpegFrame struct {
	w, h       int
	hmax, vmax int
	comps      []jpegPlane
	rgb        bool // Adobe transform 0 (or R, G, B component ids): no colour conversion
	ycck       bool // 4 components with Adobe transform 2
}

type jpegPlane struct {
	h, v   int // sampling factors
	w, hgt int // libjpeg's downsampled width and height
	stride int
	pix    []uint8
}

func decodeJPEGFrame(data []byte, maxPixels int) (*jpegFrame, error) {
	d := &jpegDecoder{data: data}
	if len(data) < 2 || data[0] != 0xff || data[1] != 0xd8 {
		return nil, errJPEGFallback
	}
	d.pos = 2
	for {
		m, err := d.nextMarker()
		if err != nil {
			return nil, err
		}
		switch {
		case m == 0xd9: // EOI
			if !d.frame {
				return nil, errJPEGFallback
			}
			return d.finish()
		case m == 0xc0 || m == 0xc1 || m == 0xc2:
			if err := d.readSOF(m == 0xc2, maxPixels); err != nil {
				return nil, err
			}
		case m == 0xc9 || m == 0xca || m == 0xcb || m == 0xcd || m == 0xce || m == 0xcf:
			return nil, errJPEGArithmetic
		case m >= 0xc3 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc:
			return nil, errJPEGFallback // lossless or hierarchical
		case m == 0xc4:
			if err := d.readDHT(); err != nil {
				return nil, err
			}
		case m == 0xdb:
			if err := d.readDQT(); err != nil {
				return nil, err
			}
		case m == 0xdd:
			seg, err := d.segment()
			if err != nil {
				return nil, err
			}
			if len(seg) < 2 {
				return nil, errJPEGFallback
			}
			d.ri = int(seg[0])<<8 | int(seg[1])
		case m == 0xda:
			if err := d.readSOS(); err != nil {
				return nil, err
			}
		case m == 0xe0:
			seg, err := d.segment()
			if err != nil {
				return nil, err
			}
			if len(seg) >= 5 && string(seg[:5]) == "JFIF\x00" {
				d.jfif = true
			}
		case m == 0xee:
			seg, err := d.segment()
			if err != nil {
				return nil, err
			}
			if len(seg) >= 12 && string(seg[:5]) == "Adobe" {
				d.adobe, d.transform = true, int(seg[11])
			}
		case m >= 0xd0 && m <= 0xd7, m == 0x01:
			// stray restart marker or TEM: no segment
		default:
			if _, err := d.segment(); err != nil {
				return nil, err
			}
		}
	}
}

func (d *jpegDecoder) nextMarker() (byte, error) {
	for d.pos < len(d.data) && d.data[d.pos] != 0xff {
		d.pos++ // libjpeg skips garbage before a marker (with a warning)
	}
	for d.pos < len(d.data) && d.data[d.pos] == 0xff {
		d.pos++
	}
	if d.pos >= len(d.data) {
		return 0, errJPEGFallback
	}
	m := d.data[d.pos]
	d.pos++
	return m, nil
}

func (d *jpegDecoder) segment() ([]byte, error) {
	if d.pos+2 > len(d.data) {
		return nil, errJPEGFallback
	}
	n := int(d.data[d.pos])<<8 | int(d.data[d.pos+1])
	if n < 2 || d.pos+n > len(d.data) {
		return nil, errJPEGFallback
	}
	seg := d.data[d.pos+2 : d.pos+n]
	d.pos += n
	return seg, nil
}

func (d *jpegDecoder) readSOF(progressive bool, maxPixels int) error {
	seg, err := d.segment()
	if err != nil {
		return err
	}
	if d.frame || len(seg) < 6 || seg[0] != 8 {
		return errJPEGFallback // a second frame, or 12-bit samples
	}
	d.progressive = progressive
	d.h = int(seg[1])<<8 | int(seg[2])
	d.w = int(seg[3])<<8 | int(seg[4])
	n := int(seg[5])
	if d.w == 0 || d.h == 0 || (n != 1 && n != 3 && n != 4) || len(seg) < 6+3*n || d.w*d.h > maxPixels {
		return errJPEGFallback
	}
	d.hmax, d.vmax = 1, 1
	for i := 0; i < n; i++ {
		c := jpegComp{id: int(seg[6+3*i]), h: int(seg[7+3*i] >> 4), v: int(seg[7+3*i] & 15), tq: int(seg[8+3*i])}
		if c.h < 1 || c.h > 4 || c.v < 1 || c.v > 4 || c.tq > 3 {
			return errJPEGFallback
		}
		d.hmax, d.vmax = max(d.hmax, c.h), max(d.vmax, c.v)
		d.comps = append(d.comps, c)
	}
	if n == 1 { // one component: one block per MCU, whatever the factors say
		d.comps[0].h, d.comps[0].v, d.hmax, d.vmax = 1, 1, 1, 1
	}
	d.mcux = (d.w + 8*d.hmax - 1) / (8 * d.hmax)
	d.mcuy = (d.h + 8*d.vmax - 1) / (8 * d.vmax)
	for i := range d.comps {
		c := &d.comps[i]
		c.bw, c.bh = d.mcux*c.h, d.mcuy*c.v
		c.coef = make([]int32, c.bw*c.bh*64)
	}
	d.frame = true
	return nil
}

func (d *jpegDecoder) readDHT() error {
	seg, err := d.segment()
	if err != nil {
		return err
	}
	for len(seg) > 0 {
		if len(seg) < 17 {
			return errJPEGFallback
		}
		class, id := seg[0]>>4, int(seg[0]&15)
		if class > 1 || id > 3 {
			return errJPEGFallback
		}
		var counts [16]int
		total := 0
		for i := range counts {
			counts[i] = int(seg[1+i])
			total += counts[i]
		}
		if total > 256 || len(seg) < 17+total {
			return errJPEGFallback
		}
		t, err := newHuffTable(counts, append([]uint8(nil), seg[17:17+total]...))
		if err != nil {
			return errJPEGFallback
		}
		if class == 0 {
			d.dc[id] = t
		} else {
			d.ac[id] = t
		}
		seg = seg[17+total:]
	}
	return nil
}

func (d *jpegDecoder) readDQT() error {
	seg, err := d.segment()
	if err != nil {
		return err
	}
	for len(seg) > 0 {
		prec, id := seg[0]>>4, int(seg[0]&15)
		if id > 3 || prec > 1 {
			return errJPEGFallback
		}
		size := 64 << prec
		if len(seg) < 1+size {
			return errJPEGFallback
		}
		for k := 0; k < 64; k++ {
			v := int32(seg[1+k])
			if prec == 1 {
				v = int32(seg[1+2*k])<<8 | int32(seg[2+2*k])
			}
			d.qt[id][jpegNatural[k]] = v
		}
		d.qtSet[id] = true
		seg = seg[1+size:]
	}
	return nil
}

func (d *jpegDecoder) readSOS() error {
	seg, err := d.segment()
	if err != nil {
		return err
	}
	if !d.frame || len(seg) < 1 {
		return errJPEGFallback
	}
	n := int(seg[0])
	if n < 1 || n > len(d.comps) || len(seg) < 4+2*n {
		return errJPEGFallback
	}
	d.scan = d.scan[:0]
	for i := 0; i < n; i++ {
		id, tables := int(seg[1+2*i]), seg[2+2*i]
		found := -1
		for j, c := range d.comps {
			if c.id == id {
				found = j
			}
		}
		if found < 0 {
			return errJPEGFallback
		}
		d.comps[found].td, d.comps[found].ta = int(tables>>4), int(tables&15)
		if d.comps[found].td > 3 || d.comps[found].ta > 3 {
			return errJPEGFallback
		}
		d.scan = append(d.scan, found)
	}
	p := seg[1+2*n:]
	d.ss, d.se, d.ah, d.al = int(p[0]), int(p[1]), int(p[2]>>4), int(p[2]&15)
	if !d.progressive {
		d.ss, d.se, d.ah, d.al = 0, 63, 0, 0
	}
	if d.ss > d.se || d.se > 63 || d.al > 13 || (d.progressive && d.ss == 0 && d.se != 0) || (d.progressive && d.ss > 0 && n != 1) {
		return errJPEGFallback
	}
	return d.decodeScan()
}

// bit returns the next entropy-coded bit; a marker or the end of the
// data inside a scan means a corrupt or truncated file.
func (d *jpegDecoder) bit() (int32, error) {
	if d.nbits == 0 {
		if d.pos >= len(d.data) {
			return 0, fmt.Errorf("truncated jpeg: the data ends inside a scan")
		}
		b := d.data[d.pos]
		if b == 0xff {
			if d.pos+1 >= len(d.data) {
				return 0, fmt.Errorf("truncated jpeg: the data ends inside a scan")
			}
			if d.data[d.pos+1] != 0 {
				return 0, errJPEGFallback // a marker where data should be
			}
			d.pos++
		}
		d.pos++
		d.bits, d.nbits = uint32(b), 8
	}
	d.nbits--
	return int32(d.bits>>d.nbits) & 1, nil
}

func (d *jpegDecoder) receive(s int) (int32, error) {
	var v int32
	for i := 0; i < s; i++ {
		b, err := d.bit()
		if err != nil {
			return 0, err
		}
		v = v<<1 | b
	}
	return v, nil
}

// extend is HUFF_EXTEND: a received value below 2^(s-1) is negative.
func extend(v int32, s int) int32 {
	if s == 0 {
		return 0
	}
	if v < 1<<(s-1) {
		return v + (-1 << s) + 1
	}
	return v
}

func (d *jpegDecoder) decode(t *huffTable) (int, error) {
	if t == nil {
		return 0, errJPEGFallback
	}
	var code int32
	for l := 1; l <= 16; l++ {
		b, err := d.bit()
		if err != nil {
			return 0, err
		}
		code = code<<1 | b
		if code <= t.maxcode[l] {
			i := int(t.valptr[l] + code - t.mincode[l])
			if i < 0 || i >= len(t.vals) {
				return 0, errJPEGFallback
			}
			return int(t.vals[i]), nil
		}
	}
	return 0, errJPEGFallback
}

func (d *jpegDecoder) decodeScan() error {
	d.bits, d.nbits, d.eobrun = 0, 0, 0
	for _, ci := range d.scan {
		d.comps[ci].pred = 0
	}
	// The units of a scan: MCUs when interleaved, else the component's
	// own blocks (only those inside the image).
	var units, across int
	if len(d.scan) == 1 {
		c := &d.comps[d.scan[0]]
		cw := (d.w*c.h + d.hmax - 1) / d.hmax
		ch := (d.h*c.v + d.vmax - 1) / d.vmax
		across = (cw + 7) / 8
		units = across * ((ch + 7) / 8)
	} else {
		across = d.mcux
		units = d.mcux * d.mcuy
	}
	for u := 0; u < units; u++ {
		if d.ri > 0 && u > 0 && u%d.ri == 0 {
			if err := d.restart(); err != nil {
				return err
			}
		}
		ux, uy := u%across, u/across
		if len(d.scan) == 1 {
			c := &d.comps[d.scan[0]]
			if err := d.block(c, c.coef[(uy*c.bw+ux)*64:][:64]); err != nil {
				return err
			}
			continue
		}
		for _, ci := range d.scan {
			c := &d.comps[ci]
			for by := 0; by < c.v; by++ {
				for bx := 0; bx < c.h; bx++ {
					row, col := uy*c.v+by, ux*c.h+bx
					if err := d.block(c, c.coef[(row*c.bw+col)*64:][:64]); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// restart expects an RSTn marker: the bit buffer is dropped and the DC
// predictions and end-of-band run start over.
func (d *jpegDecoder) restart() error {
	d.bits, d.nbits, d.eobrun = 0, 0, 0
	if d.pos+1 >= len(d.data) || d.data[d.pos] != 0xff || d.data[d.pos+1] < 0xd0 || d.data[d.pos+1] > 0xd7 {
		return errJPEGFallback
	}
	d.pos += 2
	for _, ci := range d.scan {
		d.comps[ci].pred = 0
	}
	return nil
}

func (d *jpegDecoder) block(c *jpegComp, b []int32) error {
	if !d.progressive { // sequential: DC and AC of the block together, no EOB runs
		if err := d.dcFirst(c, b, 0); err != nil {
			return err
		}
		return d.acSpectral(c, b, 1, 63, 0, false)
	}
	switch {
	case d.ss == 0 && d.ah == 0:
		return d.dcFirst(c, b, d.al)
	case d.ss == 0:
		bit, err := d.bit()
		if err != nil {
			return err
		}
		if bit != 0 {
			b[0] |= 1 << d.al
		}
		return nil
	case d.ah == 0:
		if d.eobrun > 0 {
			d.eobrun--
			return nil
		}
		return d.acSpectral(c, b, d.ss, d.se, d.al, true)
	}
	return d.acRefine(c, b)
}

// dcFirst decodes a DC difference and adds it to the component's
// prediction.
func (d *jpegDecoder) dcFirst(c *jpegComp, b []int32, al int) error {
	s, err := d.decode(d.dc[c.td])
	if err != nil {
		return err
	}
	v, err := d.receive(s)
	if err != nil {
		return err
	}
	c.pred += extend(v, s)
	b[0] = c.pred << al
	return nil
}

// acSpectral decodes AC coefficients ss..se (libjpeg's decode_mcu_slow AC
// loop and decode_mcu_AC_first): run/size symbols, ZRL skipping 16 zeros,
// and an end of block, which in progressive scans (eobRuns) also starts
// a run of empty blocks.
func (d *jpegDecoder) acSpectral(c *jpegComp, b []int32, ss, se, al int, eobRuns bool) error {
	for k := ss; k <= se; k++ {
		rs, err := d.decode(d.ac[c.ta])
		if err != nil {
			return err
		}
		r, s := rs>>4, rs&15
		if s == 0 {
			if r != 15 {
				if eobRuns {
					d.eobrun = 1 << r
					if r > 0 {
						v, err := d.receive(r)
						if err != nil {
							return err
						}
						d.eobrun += v
					}
					d.eobrun-- // this block is the run's first
				}
				break
			}
			k += 15
			continue
		}
		k += r
		if k > 63 {
			return errJPEGFallback
		}
		v, err := d.receive(s)
		if err != nil {
			return err
		}
		b[jpegNatural[k]] = extend(v, s) << al
	}
	return nil
}

// acRefine is libjpeg's decode_mcu_AC_refine: correction bits for the
// coefficients already nonzero, and newly nonzero ones of magnitude 1<<Al.
func (d *jpegDecoder) acRefine(c *jpegComp, b []int32) error {
	p1, m1 := int32(1)<<d.al, int32(-1)<<d.al
	correct := func(z int) error {
		bit, err := d.bit()
		if err != nil {
			return err
		}
		if bit != 0 && b[z]&p1 == 0 {
			if b[z] >= 0 {
				b[z] += p1
			} else {
				b[z] += m1
			}
		}
		return nil
	}
	k := d.ss
	if d.eobrun == 0 {
		for ; k <= d.se; k++ {
			rs, err := d.decode(d.ac[c.ta])
			if err != nil {
				return err
			}
			r, s := rs>>4, rs&15
			var val int32
			if s != 0 {
				bit, err := d.bit()
				if err != nil {
					return err
				}
				val = m1
				if bit != 0 {
					val = p1
				}
			} else if r != 15 {
				d.eobrun = 1 << r
				if r > 0 {
					v, err := d.receive(r)
					if err != nil {
						return err
					}
					d.eobrun += v
				}
				break
			}
			for k <= d.se {
				z := jpegNatural[k]
				if b[z] != 0 {
					if err := correct(z); err != nil {
						return err
					}
				} else {
					r--
					if r < 0 {
						break
					}
				}
				k++
			}
			if val != 0 {
				if k > 63 {
					return errJPEGFallback
				}
				b[jpegNatural[k]] = val
			}
		}
	}
	if d.eobrun > 0 {
		for ; k <= d.se; k++ {
			if z := jpegNatural[k]; b[z] != 0 {
				if err := correct(z); err != nil {
					return err
				}
			}
		}
		d.eobrun--
	}
	return nil
}

// finish runs the inverse DCT of every block into sample planes.
func (d *jpegDecoder) finish() (*jpegFrame, error) {
	f := &jpegFrame{w: d.w, h: d.h, hmax: d.hmax, vmax: d.vmax}
	switch {
	case len(d.comps) == 1:
	case len(d.comps) == 4: // libjpeg: YCCK when an Adobe marker says transform 2 (or any non-zero), else CMYK
		f.ycck = d.adobe && d.transform != 0
	case d.jfif:
	case d.adobe:
		f.rgb = d.transform == 0
	default:
		f.rgb = d.comps[0].id == 'R' && d.comps[1].id == 'G' && d.comps[2].id == 'B'
	}
	for i := range d.comps {
		c := &d.comps[i]
		if !d.qtSet[c.tq] {
			return nil, errJPEGFallback
		}
		p := jpegPlane{h: c.h, v: c.v, stride: c.bw * 8}
		p.w = (d.w*c.h + d.hmax - 1) / d.hmax
		p.hgt = (d.h*c.v + d.vmax - 1) / d.vmax
		p.pix = make([]uint8, c.bw*8*c.bh*8)
		for by := 0; by < c.bh; by++ {
			for bx := 0; bx < c.bw; bx++ {
				idctISLOW(c.coef[(by*c.bw+bx)*64:][:64], &d.qt[c.tq], p.pix[by*8*p.stride+bx*8:], p.stride)
			}
		}
		f.comps = append(f.comps, p)
	}
	return f, nil
}

// jidctint.c's constants: FIX(x) = x·2^13 rounded.
const (
	fix0_298631336 = 2446
	fix0_390180644 = 3196
	fix0_541196100 = 4433
	fix0_765366865 = 6270
	fix0_899976223 = 7373
	fix1_175875602 = 9633
	fix1_501321110 = 12299
	fix1_847759065 = 15137
	fix1_961570560 = 16069
	fix2_053119869 = 16819
	fix2_562915447 = 20995
	fix3_072711026 = 25172
	constBits      = 13
	pass1Bits      = 2
)

// idctISLOW is jpeg_idct_islow: dequantise, columns then rows, each pass
// the same even/odd butterfly; results descaled with rounding and mapped
// through libjpeg's range-limit table (idctLimit).
func idctISLOW(coef []int32, q *[64]int32, out []uint8, stride int) {
	var ws [64]int64
	descale := func(x int64, n uint) int64 { return (x + 1<<(n-1)) >> n }
	for col := 0; col < 8; col++ {
		in := func(r int) int64 { return int64(coef[r*8+col]) * int64(q[r*8+col]) }
		if coef[8+col] == 0 && coef[16+col] == 0 && coef[24+col] == 0 && coef[32+col] == 0 &&
			coef[40+col] == 0 && coef[48+col] == 0 && coef[56+col] == 0 {
			dc := in(0) << pass1Bits
			for r := 0; r < 8; r++ {
				ws[r*8+col] = dc
			}
			continue
		}
		o := butterfly(in(0), in(1), in(2), in(3), in(4), in(5), in(6), in(7))
		for r := 0; r < 8; r++ {
			ws[r*8+col] = descale(o[r], constBits-pass1Bits)
		}
	}
	for row := 0; row < 8; row++ {
		w := ws[row*8 : row*8+8]
		dst := out[row*stride : row*stride+8]
		if w[1] == 0 && w[2] == 0 && w[3] == 0 && w[4] == 0 && w[5] == 0 && w[6] == 0 && w[7] == 0 {
			v := idctLimit(descale(w[0], pass1Bits+3))
			for i := range dst {
				dst[i] = v
			}
			continue
		}
		o := butterfly(w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7])
		for i := range dst {
			dst[i] = idctLimit(descale(o[i], constBits+pass1Bits+3))
		}
	}
}

// butterfly is one 8-point pass of the LL&M inverse DCT as jidctint.c
// writes it, before descaling.
func butterfly(i0, i1, i2, i3, i4, i5, i6, i7 int64) [8]int64 {
	z1 := (i2 + i6) * fix0_541196100
	tmp2 := z1 + i6*-fix1_847759065
	tmp3 := z1 + i2*fix0_765366865
	tmp0 := (i0 + i4) << constBits
	tmp1 := (i0 - i4) << constBits
	tmp10, tmp13 := tmp0+tmp3, tmp0-tmp3
	tmp11, tmp12 := tmp1+tmp2, tmp1-tmp2

	t0, t1, t2, t3 := i7, i5, i3, i1
	z1 = t0 + t3
	z2 := t1 + t2
	z3 := t0 + t2
	z4 := t1 + t3
	z5 := (z3 + z4) * fix1_175875602
	t0 *= fix0_298631336
	t1 *= fix2_053119869
	t2 *= fix3_072711026
	t3 *= fix1_501321110
	z1 *= -fix0_899976223
	z2 *= -fix2_562915447
	z3 *= -fix1_961570560
	z4 *= -fix0_390180644
	z3 += z5
	z4 += z5
	t0 += z1 + z3
	t1 += z2 + z4
	t2 += z2 + z3
	t3 += z1 + z4
	return [8]int64{tmp10 + t3, tmp11 + t2, tmp12 + t1, tmp13 + t0, tmp13 - t0, tmp12 - t1, tmp11 - t2, tmp10 - t3}
}

// idctLimit is range_limit[x & RANGE_MASK] with the table libjpeg's
// prepare_range_limit_table builds: x + 128 clamped to 0..255 for
// |x| < 512, wrapping beyond (only corrupt data gets there).
func idctLimit(x int64) uint8 {
	i := x & 1023
	switch {
	case i < 128:
		return uint8(i + 128)
	case i < 512:
		return 255
	case i < 896:
		return 0
	}
	return uint8(i - 896)
}
