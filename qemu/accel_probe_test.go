package qemu

import (
	"context"
	"testing"
	"time"
)

// The probe must succeed under TCG, or a failed KVM probe would prove
// nothing about KVM.
func TestProbeFirmwareRunsUnderTCG(t *testing.T) {
	if !probe(context.Background(), "tcg", 90*time.Second) {
		t.Fatal("OVMF printed no BdsDxe line under TCG")
	}
}

func TestDetectAccelOverride(t *testing.T) {
	t.Setenv("PQB_ACCEL", "tcg")
	if a := DetectAccel(context.Background()); a != "tcg" {
		t.Fatalf("DetectAccel with PQB_ACCEL=tcg = %q", a)
	}
}
