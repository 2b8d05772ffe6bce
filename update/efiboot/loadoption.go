package efiboot

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
)

// LoadOptionActive is EFI_LOAD_OPTION's LOAD_OPTION_ACTIVE attribute: the
// firmware skips inactive entries in BootOrder.
const LoadOptionActive = 0x00000001

// Device path node types and subtypes (UEFI 2.10, section 10.3) that a
// pqbranch load option uses.
const (
	NodeMedia        = 0x04
	SubHardDrive     = 0x01
	SubFilePath      = 0x04
	NodeEnd          = 0x7f
	SubEndEntire     = 0xff
	SubEndInstance   = 0x01
	hardDriveNodeLen = 42
	mbrTypeGPT       = 0x02 // HARDDRIVE_DEVICE_PATH.MBRType
	sigTypeGUID      = 0x02 // HARDDRIVE_DEVICE_PATH.SignatureType
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed load option")

// LoadOption is a decoded EFI_LOAD_OPTION, the contents of a Boot####
// variable.
type LoadOption struct {
	Attributes  uint32
	Description string
	// FilePaths is the FilePathList: one or more device paths, each
	// terminated by an End Entire node (not kept in Nodes). The first one
	// is the image to boot.
	FilePaths    []DevicePath
	OptionalData []byte
}

// DevicePath is one device path without its End Entire terminator.
type DevicePath []Node

// Node is one device path node; Data excludes the 4-byte header.
type Node struct {
	Type, SubType uint8
	Data          []byte
}

// HardDrive is a Media / Hard Drive node (HARDDRIVE_DEVICE_PATH) for a GPT
// partition.
type HardDrive struct {
	PartNumber    uint32
	StartLBA      uint64
	SizeLBA       uint64
	Signature     [16]byte // the partition's unique GUID, EFI (mixed-endian) byte order
	MBRType       uint8
	SignatureType uint8
}

// GPTHardDrive builds the node for a GPT partition identified by its unique
// GUID (text form, as blkid or go-diskfs print it).
func GPTHardDrive(partNumber uint32, startLBA, sizeLBA uint64, partGUID string) (HardDrive, error) {
	sig, err := ParseGUID(partGUID)
	if err != nil {
		return HardDrive{}, err
	}
	return HardDrive{PartNumber: partNumber, StartLBA: startLBA, SizeLBA: sizeLBA, Signature: sig, MBRType: mbrTypeGPT, SignatureType: sigTypeGUID}, nil
}

// Node encodes h.
func (h HardDrive) Node() Node {
	d := make([]byte, hardDriveNodeLen-4)
	binary.LittleEndian.PutUint32(d[0:], h.PartNumber)
	binary.LittleEndian.PutUint64(d[4:], h.StartLBA)
	binary.LittleEndian.PutUint64(d[12:], h.SizeLBA)
	copy(d[20:36], h.Signature[:])
	d[36] = h.MBRType
	d[37] = h.SignatureType
	return Node{Type: NodeMedia, SubType: SubHardDrive, Data: d}
}

// GUID is the partition GUID of a GPT node in text form, "" otherwise.
func (h HardDrive) GUID() string {
	if h.MBRType != mbrTypeGPT || h.SignatureType != sigTypeGUID {
		return ""
	}
	return FormatGUID(h.Signature)
}

// AsHardDrive decodes n as a Hard Drive node.
func (n Node) AsHardDrive() (HardDrive, bool) {
	if n.Type != NodeMedia || n.SubType != SubHardDrive || len(n.Data) != hardDriveNodeLen-4 {
		return HardDrive{}, false
	}
	var h HardDrive
	h.PartNumber = binary.LittleEndian.Uint32(n.Data[0:])
	h.StartLBA = binary.LittleEndian.Uint64(n.Data[4:])
	h.SizeLBA = binary.LittleEndian.Uint64(n.Data[12:])
	copy(h.Signature[:], n.Data[20:36])
	h.MBRType = n.Data[36]
	h.SignatureType = n.Data[37]
	return h, true
}

// FilePathNode builds a Media / File Path node; path uses backslashes,
// e.g. \EFI\pqbranch\pqbranch.efi.
func FilePathNode(path string) Node {
	return Node{Type: NodeMedia, SubType: SubFilePath, Data: encodeUTF16Z(path)}
}

// AsFilePath decodes n as a File Path node.
func (n Node) AsFilePath() (string, bool) {
	if n.Type != NodeMedia || n.SubType != SubFilePath {
		return "", false
	}
	s, rest, err := decodeUTF16Z(n.Data)
	if err != nil || len(rest) != 0 {
		return "", false
	}
	return s, true
}

// Marshal encodes o as the data of a Boot#### variable.
func (o LoadOption) Marshal() ([]byte, error) {
	var paths []byte
	for _, p := range o.FilePaths {
		for _, n := range p {
			if 4+len(n.Data) > 0xffff {
				return nil, fmt.Errorf("efiboot: device path node type %#x/%#x: %d bytes; at most 65535", n.Type, n.SubType, 4+len(n.Data))
			}
			if n.Type == NodeEnd && n.SubType == SubEndEntire {
				return nil, errors.New("efiboot: device path holds an End Entire node; it is added by Marshal")
			}
			paths = appendNode(paths, n)
		}
		paths = appendNode(paths, Node{Type: NodeEnd, SubType: SubEndEntire})
	}
	if len(paths) > 0xffff {
		return nil, fmt.Errorf("efiboot: FilePathList of %d bytes; at most 65535", len(paths))
	}
	b := binary.LittleEndian.AppendUint32(nil, o.Attributes)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(paths)))
	b = append(b, encodeUTF16Z(o.Description)...)
	b = append(b, paths...)
	return append(b, o.OptionalData...), nil
}

func appendNode(b []byte, n Node) []byte {
	b = append(b, n.Type, n.SubType)
	b = binary.LittleEndian.AppendUint16(b, uint16(4+len(n.Data)))
	return append(b, n.Data...)
}

// ParseLoadOption decodes the data of a Boot#### variable. The bytes come
// from NVRAM that firmware, other operating systems and users write: every
// length is checked, and a FilePathList must end exactly on an End Entire
// node.
func ParseLoadOption(b []byte) (LoadOption, error) {
	var o LoadOption
	if len(b) < 6 {
		return o, fmt.Errorf("%w: %d bytes; the header alone is 6", ErrMalformed, len(b))
	}
	o.Attributes = binary.LittleEndian.Uint32(b)
	pathLen := int(binary.LittleEndian.Uint16(b[4:]))
	desc, rest, err := decodeUTF16Z(b[6:])
	if err != nil {
		return o, fmt.Errorf("%w: Description: %v", ErrMalformed, err)
	}
	o.Description = desc
	if pathLen > len(rest) {
		return o, fmt.Errorf("%w: FilePathListLength is %d; only %d bytes follow the description", ErrMalformed, pathLen, len(rest))
	}
	if pathLen == 0 {
		return o, fmt.Errorf("%w: FilePathListLength is 0; expected at least one device path", ErrMalformed)
	}
	o.FilePaths, err = parseFilePathList(rest[:pathLen])
	if err != nil {
		return o, err
	}
	if len(rest) > pathLen {
		o.OptionalData = bytes.Clone(rest[pathLen:])
	}
	return o, nil
}

func parseFilePathList(b []byte) ([]DevicePath, error) {
	var paths []DevicePath
	var cur DevicePath
	for off := 0; off < len(b); {
		if len(b)-off < 4 {
			return nil, fmt.Errorf("%w: FilePathList: %d trailing bytes at offset %d; a node header is 4", ErrMalformed, len(b)-off, off)
		}
		typ, sub := b[off], b[off+1]
		n := int(binary.LittleEndian.Uint16(b[off+2:]))
		if n < 4 || n > len(b)-off {
			return nil, fmt.Errorf("%w: FilePathList: node %#x/%#x at offset %d has length %d; expected 4..%d", ErrMalformed, typ, sub, off, n, len(b)-off)
		}
		node := Node{Type: typ, SubType: sub, Data: bytes.Clone(b[off+4 : off+n])}
		off += n
		if typ == NodeEnd && sub == SubEndEntire {
			if n != 4 {
				return nil, fmt.Errorf("%w: FilePathList: End node of length %d; expected 4", ErrMalformed, n)
			}
			paths = append(paths, cur)
			cur = nil
			continue
		}
		cur = append(cur, node)
	}
	if cur != nil || len(paths) == 0 {
		return nil, fmt.Errorf("%w: FilePathList does not end with an End Entire node", ErrMalformed)
	}
	return paths, nil
}

// ParseGUID parses "8be4df61-93ca-11d2-aa0d-00e098032b8c" (any case) into
// the EFI byte order: the first three fields little-endian, the rest as
// written. This is the order of GPT headers and of HARDDRIVE_DEVICE_PATH.
func ParseGUID(s string) ([16]byte, error) {
	var g [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, fmt.Errorf("efiboot: GUID %q: expected the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", s)
	}
	raw, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil {
		return g, fmt.Errorf("efiboot: GUID %q: %v", s, err)
	}
	g[0], g[1], g[2], g[3] = raw[3], raw[2], raw[1], raw[0]
	g[4], g[5] = raw[5], raw[4]
	g[6], g[7] = raw[7], raw[6]
	copy(g[8:], raw[8:])
	return g, nil
}

// FormatGUID is the inverse of ParseGUID, in lower case.
func FormatGUID(g [16]byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(g[0:]), binary.LittleEndian.Uint16(g[4:]), binary.LittleEndian.Uint16(g[6:]), g[8:10], g[10:16])
}

func encodeUTF16Z(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 0, 2*len(u)+2)
	for _, c := range u {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return append(b, 0, 0)
}

// decodeUTF16Z decodes a NUL-terminated UTF-16LE string at the start of b
// and returns what follows the NUL.
func decodeUTF16Z(b []byte) (string, []byte, error) {
	var u []uint16
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			return string(utf16.Decode(u)), b[i+2:], nil
		}
		u = append(u, c)
	}
	return "", nil, fmt.Errorf("no NUL-terminated UTF-16 string in %d bytes", len(b))
}
