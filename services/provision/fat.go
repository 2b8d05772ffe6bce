package provision

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"
)

// This file reads one file from the root directory of a FAT12/16/32 volume,
// and the volume's label, straight from the device. It is written here, not
// taken from go-diskfs (which writes the sticks): a stick is untrusted, and
// go-diskfs follows cluster chains without a bound (a chain that loops back
// grows a slice until the box runs out of memory) and loads the whole FAT
// into memory. Here every read is bounded by what is being read: a chain is
// followed for at most the clusters its file's size needs, FAT entries are
// read one at a time, and every offset is checked against the volume.

// FATType is the FAT variant of a volume.
type FATType int

const (
	FAT12 FATType = iota + 12
	FAT16
	FAT32
)

func (t FATType) String() string {
	switch t {
	case FAT12:
		return "FAT12"
	case FAT16:
		return "FAT16"
	case FAT32:
		return "FAT32"
	}
	return fmt.Sprintf("FATType(%d)", int(t))
}

// maxRootDir bounds a FAT32 root directory (a cluster chain) read in
// search of the label and the config: 32768 entries.
const maxRootDir = 1 << 20

// fatVolume is a FAT file system found on a device.
type fatVolume struct {
	r     io.ReaderAt
	start int64 // byte offset of the volume on the device

	typ            FATType
	bytesPerSector int64
	clusterBytes   int64
	fatStart       int64 // byte offset of the first FAT within the volume
	rootStart      int64 // FAT12/16: fixed root directory, byte offset
	rootBytes      int64 // FAT12/16: its size
	rootCluster    uint32
	dataStart      int64  // byte offset of cluster 2
	clusters       uint32 // data clusters: valid cluster numbers are 2..clusters+1
	bootLabel      string // the label in the boot sector, "" if none
}

// openFAT reads the boot sector of the volume at [start, start+size) of r
// and checks that its geometry describes a FAT file system that fits.
func openFAT(r io.ReaderAt, start, size int64) (*fatVolume, error) {
	b := make([]byte, 512)
	if _, err := r.ReadAt(b, start); err != nil {
		return nil, fmt.Errorf("read boot sector: %w", err)
	}
	le16 := func(off int) int64 { return int64(binary.LittleEndian.Uint16(b[off:])) }
	le32 := func(off int) int64 { return int64(binary.LittleEndian.Uint32(b[off:])) }
	bps, spc := le16(0x0b), int64(b[0x0d])
	reserved, fats, rootEntries := le16(0x0e), int64(b[0x10]), le16(0x11)
	total := le16(0x13)
	if total == 0 {
		total = le32(0x20)
	}
	media := b[0x15]
	fatSectors := le16(0x16)
	switch bps {
	case 512, 1024, 2048, 4096:
	default:
		return nil, fmt.Errorf("boot sector: %d bytes per sector, expected 512, 1024, 2048 or 4096", bps)
	}
	switch {
	case spc == 0 || spc&(spc-1) != 0:
		return nil, fmt.Errorf("boot sector: %d sectors per cluster, expected a power of two", spc)
	case reserved == 0 || fats == 0:
		return nil, errors.New("boot sector: no reserved sectors or no FAT")
	case media != 0xf0 && media < 0xf8: // as Linux's fat_valid_media
		return nil, fmt.Errorf("boot sector: media byte %#x, expected 0xf0 or 0xf8..0xff", media)
	case total == 0 || total*bps > size:
		return nil, fmt.Errorf("boot sector: %d sectors of %d bytes, expected at most the volume's %d bytes", total, bps, size)
	}
	v := &fatVolume{r: r, start: start, bytesPerSector: bps, clusterBytes: spc * bps, fatStart: reserved * bps}
	labelAt, sigAt := 0x2b, 0x26
	// Like Linux, the BPB's layout decides FAT32 (no 16-bit FAT size);
	// the cluster count tells FAT12 from FAT16.
	if fatSectors == 0 {
		v.typ = FAT32
		fatSectors = le32(0x24)
		v.rootCluster = uint32(le32(0x2c))
		labelAt, sigAt = 0x47, 0x42
	}
	rootSectors := (rootEntries*32 + bps - 1) / bps
	v.rootStart = (reserved + fats*fatSectors) * bps
	v.rootBytes = rootEntries * 32
	dataSector := reserved + fats*fatSectors + rootSectors
	if fatSectors == 0 || dataSector >= total {
		return nil, fmt.Errorf("boot sector: FATs and root directory (%d sectors) leave no data area in %d sectors", dataSector, total)
	}
	v.dataStart = dataSector * bps
	clusters := (total - dataSector) / spc
	if v.typ != FAT32 {
		v.typ = FAT16
		if clusters < 4085 {
			v.typ = FAT12
		}
	}
	// The FAT must have an entry for every cluster (and cluster 0 and 1),
	// the last FAT12 entry's second half byte included.
	bits := map[FATType]int64{FAT12: 12, FAT16: 16, FAT32: 32}[v.typ]
	if need := ((clusters+2)*bits + 7) / 8; fatSectors*bps < need {
		return nil, fmt.Errorf("boot sector: a FAT of %d bytes for %d clusters, expected at least %d", fatSectors*bps, clusters, need)
	}
	if clusters > 0x0ffffff5 {
		return nil, fmt.Errorf("boot sector: %d clusters, more than FAT32 can address", clusters)
	}
	v.clusters = uint32(clusters)
	if v.typ == FAT32 && !v.valid(v.rootCluster) {
		return nil, fmt.Errorf("boot sector: root directory at cluster %d, expected 2..%d", v.rootCluster, clusters+1)
	}
	if b[sigAt] == 0x29 { // the extended boot signature: the label field exists
		v.bootLabel = trimLabel(b[labelAt : labelAt+11])
	}
	return v, nil
}

func trimLabel(b []byte) string { return strings.TrimRight(string(b), " \x00") }

func (v *fatVolume) valid(c uint32) bool { return c >= 2 && c <= v.clusters+1 }

// next returns the FAT entry of cluster c: the next cluster of its chain,
// or ok=false at the end of the chain.
func (v *fatVolume) next(c uint32) (n uint32, ok bool, err error) {
	var b [4]byte
	var off int64
	switch v.typ {
	case FAT12:
		off = int64(c) + int64(c)/2
	case FAT16:
		off = int64(c) * 2
	default:
		off = int64(c) * 4
	}
	if _, err := v.r.ReadAt(b[:], v.start+v.fatStart+off); err != nil {
		return 0, false, fmt.Errorf("read FAT entry of cluster %d: %w", c, err)
	}
	var eoc uint32
	switch v.typ {
	case FAT12:
		n = uint32(binary.LittleEndian.Uint16(b[:]))
		if c&1 == 1 {
			n >>= 4
		}
		n &= 0xfff
		eoc = 0xff8
	case FAT16:
		n, eoc = uint32(binary.LittleEndian.Uint16(b[:])), 0xfff8
	default:
		n, eoc = binary.LittleEndian.Uint32(b[:])&0x0fffffff, 0x0ffffff8
	}
	switch {
	case n >= eoc:
		return 0, false, nil
	case !v.valid(n):
		return 0, false, fmt.Errorf("cluster chain: cluster %d points to %#x, expected a data cluster or the end of the chain", c, n)
	}
	return n, true, nil
}

// readChain reads the chain starting at cluster first, at most limit bytes.
// It follows at most the clusters limit needs, so a chain that loops ends.
func (v *fatVolume) readChain(first uint32, limit int64) ([]byte, error) {
	if !v.valid(first) {
		return nil, fmt.Errorf("cluster chain starts at %d, expected 2..%d", first, v.clusters+1)
	}
	out := make([]byte, 0, min(limit, v.clusterBytes))
	c := first
	for int64(len(out)) < limit {
		buf := make([]byte, min(v.clusterBytes, limit-int64(len(out))))
		if _, err := v.r.ReadAt(buf, v.start+v.dataStart+int64(c-2)*v.clusterBytes); err != nil {
			return nil, fmt.Errorf("read cluster %d: %w", c, err)
		}
		out = append(out, buf...)
		n, ok, err := v.next(c)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		c = n
	}
	return out, nil
}

// dirEntry is a file or directory in a FAT directory.
type dirEntry struct {
	name    string // the long name when the entry has a valid one, else NAME.EXT
	dir     bool
	cluster uint32
	size    int64
}

// root reads the root directory: its entries and its volume-label entry.
func (v *fatVolume) root() (entries []dirEntry, label string, err error) {
	var raw []byte
	if v.typ == FAT32 {
		raw, err = v.readChain(v.rootCluster, maxRootDir)
	} else {
		raw = make([]byte, v.rootBytes)
		_, err = v.r.ReadAt(raw, v.start+v.rootStart)
	}
	if err != nil {
		return nil, "", fmt.Errorf("root directory: %w", err)
	}
	entries, label = parseDir(raw, v.typ == FAT32)
	return entries, label, nil
}

// parseDir decodes 32-byte directory entries, joining long-name (VFAT)
// entries to the short entry they precede when their checksum matches it.
func parseDir(raw []byte, fat32 bool) (entries []dirEntry, label string) {
	var long []uint16 // UTF-16 name being collected, in order
	var want, sum byte
	reset := func() { long, want = nil, 0 }
	for i := 0; i+32 <= len(raw); i += 32 {
		e := raw[i : i+32]
		attr := e[11]
		switch {
		case e[0] == 0x00: // no entries after this one
			return entries, label
		case e[0] == 0xe5: // deleted
			reset()
		case attr&0x3f == 0x0f: // a piece of a long name, last piece first
			ord := e[0] & 0x1f
			if e[0]&0x40 != 0 {
				long, want, sum = make([]uint16, 13*int(ord)), ord, e[13]
			} else if want == 0 || ord != want || e[13] != sum {
				reset()
				continue
			}
			if ord == 0 {
				reset()
				continue
			}
			for j, off := range []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30} {
				long[13*int(ord-1)+j] = binary.LittleEndian.Uint16(e[off:])
			}
			want = ord - 1
		case attr&0x08 != 0: // the volume label
			if label == "" {
				label = trimLabel(e[:11])
			}
			reset()
		default:
			name := shortName(e)
			if long != nil && want == 0 && checksum(e[:11]) == sum {
				name = decodeLong(long)
			}
			reset()
			cluster := uint32(binary.LittleEndian.Uint16(e[26:]))
			if fat32 {
				cluster |= uint32(binary.LittleEndian.Uint16(e[20:])) << 16
			}
			entries = append(entries, dirEntry{
				name:    name,
				dir:     attr&0x10 != 0,
				cluster: cluster,
				size:    int64(binary.LittleEndian.Uint32(e[28:])),
			})
		}
	}
	return entries, label
}

func shortName(e []byte) string {
	base := []byte(strings.TrimRight(string(e[:8]), " "))
	if len(base) > 0 && base[0] == 0x05 { // an escaped 0xe5
		base[0] = 0xe5
	}
	ext := strings.TrimRight(string(e[8:11]), " ")
	if ext == "" {
		return string(base)
	}
	return string(base) + "." + ext
}

// checksum is the short-name checksum that long-name entries carry.
func checksum(short []byte) byte {
	var s byte
	for _, c := range short {
		s = (s>>1 | s<<7) + c
	}
	return s
}

// decodeLong ends the name at its NUL (the padding after it is 0xffff).
func decodeLong(u []uint16) string {
	for i, c := range u {
		if c == 0 {
			u = u[:i]
			break
		}
	}
	return string(utf16.Decode(u))
}
