// Package uki builds a unified kernel image: systemd's EFI stub with the
// kernel, initramfs, command line and os-release added as PE sections. UEFI
// firmware boots it directly, so a slot needs no boot loader and no boot
// entry to come up from an empty NVRAM.
package uki

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Section is one PE section to add.
type Section struct {
	Name string // at most 8 bytes, e.g. ".linux"
	Data []byte
}

const (
	sectionHeaderSize = 40
	// IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ
	dataCharacteristics = 0x40000040
	pe32PlusMagic       = 0x20b
	pageSize            = 4096
)

// Build appends sections to the stub and returns the new image. Sections are
// placed after the stub's own image, page-aligned, in the given order; the
// stub finds them by name. The PE timestamp and checksum are left as the
// stub has them, so equal inputs give equal outputs.
func Build(stub []byte, sections []Section) ([]byte, error) {
	img := append([]byte(nil), stub...)
	le := binary.LittleEndian
	if len(img) < 0x40 || img[0] != 'M' || img[1] != 'Z' {
		return nil, errors.New("uki: stub is not a PE image")
	}
	peOff := int(le.Uint32(img[0x3c:]))
	if peOff+24 > len(img) || !bytes.Equal(img[peOff:peOff+4], []byte("PE\x00\x00")) {
		return nil, errors.New("uki: stub has no PE header")
	}
	coff := peOff + 4
	numSections := int(le.Uint16(img[coff+2:]))
	optSize := int(le.Uint16(img[coff+16:]))
	opt := coff + 20
	if opt+optSize > len(img) || le.Uint16(img[opt:]) != pe32PlusMagic {
		return nil, errors.New("uki: stub is not PE32+")
	}
	sectionAlign := le.Uint32(img[opt+32:])
	fileAlign := le.Uint32(img[opt+36:])
	sizeOfImage := le.Uint32(img[opt+56:])
	sizeOfHeaders := int(le.Uint32(img[opt+60:]))
	table := opt + optSize

	// The new headers must fit in the header area, before any section's data.
	end := table + (numSections+len(sections))*sectionHeaderSize
	if end > sizeOfHeaders {
		return nil, fmt.Errorf("uki: no room for %d more section headers in the stub (%d of %d header bytes used)", len(sections), table+numSections*sectionHeaderSize, sizeOfHeaders)
	}
	for i := 0; i < numSections; i++ {
		h := table + i*sectionHeaderSize
		if raw := int(le.Uint32(img[h+20:])); raw != 0 && raw < end {
			return nil, errors.New("uki: stub's section data overlaps the header area")
		}
	}

	vma := alignUp(sizeOfImage, pageSize)
	for i, s := range sections {
		if len(s.Name) > 8 {
			return nil, fmt.Errorf("uki: section name %q longer than 8 bytes", s.Name)
		}
		for uint32(len(img))%fileAlign != 0 {
			img = append(img, 0)
		}
		raw := uint32(len(img))
		img = append(img, s.Data...)
		rawSize := alignUp(uint32(len(s.Data)), fileAlign)
		for uint32(len(img)) < raw+rawSize {
			img = append(img, 0)
		}
		h := table + (numSections+i)*sectionHeaderSize
		var name [8]byte
		copy(name[:], s.Name)
		copy(img[h:], name[:])
		le.PutUint32(img[h+8:], uint32(len(s.Data))) // VirtualSize
		le.PutUint32(img[h+12:], vma)                // VirtualAddress
		le.PutUint32(img[h+16:], rawSize)            // SizeOfRawData
		le.PutUint32(img[h+20:], raw)                // PointerToRawData
		le.PutUint32(img[h+36:], dataCharacteristics)
		vma = alignUp(vma+uint32(len(s.Data)), max(sectionAlign, pageSize))
	}
	le.PutUint16(img[coff+2:], uint16(numSections+len(sections)))
	le.PutUint32(img[opt+56:], alignUp(vma, sectionAlign))
	return img, nil
}

func alignUp(v, a uint32) uint32 { return (v + a - 1) / a * a }
