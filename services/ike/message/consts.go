// Package message is the IKEv2 wire codec (RFC 7296 with RFC 7383, 9242 and
// 9370 additions). Each payload is a marshal/unmarshal pair over its body; the
// generic payload headers and chaining live in chain.go. The codec knows
// nothing about keys: encrypted payloads are carried as opaque bodies.
package message

import "fmt"

// ExchangeType is the IKE header's Exchange Type.
type ExchangeType uint8

const (
	IKE_SA_INIT      ExchangeType = 34
	IKE_AUTH         ExchangeType = 35
	CREATE_CHILD_SA  ExchangeType = 36
	INFORMATIONAL    ExchangeType = 37
	IKE_INTERMEDIATE ExchangeType = 43 // RFC 9242
	IKE_FOLLOWUP_KE  ExchangeType = 44 // RFC 9370
)

func (e ExchangeType) String() string {
	switch e {
	case IKE_SA_INIT:
		return "IKE_SA_INIT"
	case IKE_AUTH:
		return "IKE_AUTH"
	case CREATE_CHILD_SA:
		return "CREATE_CHILD_SA"
	case INFORMATIONAL:
		return "INFORMATIONAL"
	case IKE_INTERMEDIATE:
		return "IKE_INTERMEDIATE"
	case IKE_FOLLOWUP_KE:
		return "IKE_FOLLOWUP_KE"
	}
	return fmt.Sprintf("EXCHANGE(%d)", uint8(e))
}

// Flags of the IKE header.
type Flags uint8

const (
	FlagInitiator Flags = 0x08
	FlagVersion   Flags = 0x10
	FlagResponse  Flags = 0x20
)

// PayloadType is a Next Payload value.
type PayloadType uint8

const (
	PayloadNone     PayloadType = 0
	PayloadSA       PayloadType = 33
	PayloadKE       PayloadType = 34
	PayloadIDi      PayloadType = 35
	PayloadIDr      PayloadType = 36
	PayloadCERT     PayloadType = 37
	PayloadCERTREQ  PayloadType = 38
	PayloadAUTH     PayloadType = 39
	PayloadNonce    PayloadType = 40
	PayloadNotify   PayloadType = 41
	PayloadDelete   PayloadType = 42
	PayloadVendorID PayloadType = 43
	PayloadTSi      PayloadType = 44
	PayloadTSr      PayloadType = 45
	PayloadSK       PayloadType = 46
	PayloadCP       PayloadType = 47
	PayloadEAP      PayloadType = 48
	PayloadSKF      PayloadType = 53 // RFC 7383
)

// Protocol IDs of proposals, notifies and deletes.
type Protocol uint8

const (
	ProtoNone Protocol = 0
	ProtoIKE  Protocol = 1
	ProtoAH   Protocol = 2
	ProtoESP  Protocol = 3
)

// TransformType of a transform substructure.
type TransformType uint8

const (
	TransformENCR   TransformType = 1
	TransformPRF    TransformType = 2
	TransformINTEG  TransformType = 3
	TransformKE     TransformType = 4
	TransformESN    TransformType = 5
	TransformADDKE1 TransformType = 6 // ADDKE1..ADDKE7 are 6..12 (RFC 9370)
	TransformADDKE7 TransformType = 12
)

// Transform IDs this implementation uses.
const (
	ENCR_AES_GCM_16 uint16 = 20

	PRF_HMAC_SHA2_256 uint16 = 5
	PRF_HMAC_SHA2_384 uint16 = 6
	PRF_HMAC_SHA2_512 uint16 = 7

	KE_NONE      uint16 = 0
	KE_ECP256    uint16 = 19
	KE_ECP384    uint16 = 20
	KE_X25519    uint16 = 31
	KE_MLKEM512  uint16 = 35
	KE_MLKEM768  uint16 = 36
	KE_MLKEM1024 uint16 = 37

	ESN_NONE uint16 = 0
	ESN_ON   uint16 = 1
)

// attrKeyLength is the Key Length transform attribute (TV format).
const attrKeyLength = 14

// NotifyType of a Notify payload; below 16384 are errors.
type NotifyType uint16

const (
	UNSUPPORTED_CRITICAL_PAYLOAD    NotifyType = 1
	INVALID_IKE_SPI                 NotifyType = 4
	INVALID_MAJOR_VERSION           NotifyType = 5
	INVALID_SYNTAX                  NotifyType = 7
	INVALID_MESSAGE_ID              NotifyType = 9
	INVALID_SPI                     NotifyType = 11
	NO_PROPOSAL_CHOSEN              NotifyType = 14
	INVALID_KE_PAYLOAD              NotifyType = 17
	AUTHENTICATION_FAILED           NotifyType = 24
	SINGLE_PAIR_REQUIRED            NotifyType = 34
	NO_ADDITIONAL_SAS               NotifyType = 35
	INTERNAL_ADDRESS_FAILURE        NotifyType = 36
	FAILED_CP_REQUIRED              NotifyType = 37
	TS_UNACCEPTABLE                 NotifyType = 38
	INVALID_SELECTORS               NotifyType = 39
	TEMPORARY_FAILURE               NotifyType = 43
	CHILD_SA_NOT_FOUND              NotifyType = 44
	STATE_NOT_FOUND                 NotifyType = 47 // RFC 9370
	INITIAL_CONTACT                 NotifyType = 16384
	SET_WINDOW_SIZE                 NotifyType = 16385
	NAT_DETECTION_SOURCE_IP         NotifyType = 16388
	NAT_DETECTION_DESTINATION_IP    NotifyType = 16389
	COOKIE                          NotifyType = 16390
	USE_TRANSPORT_MODE              NotifyType = 16391
	REKEY_SA                        NotifyType = 16393
	ESP_TFC_PADDING_NOT_SUPPORTED   NotifyType = 16394
	NON_FIRST_FRAGMENTS_ALSO        NotifyType = 16395
	IKEV2_FRAGMENTATION_SUPPORTED   NotifyType = 16430
	SIGNATURE_HASH_ALGORITHMS       NotifyType = 16431
	INTERMEDIATE_EXCHANGE_SUPPORTED NotifyType = 16438
	ADDITIONAL_KEY_EXCHANGE         NotifyType = 16441
)

// IsError reports whether n is an error notification.
func (n NotifyType) IsError() bool { return n < 16384 }

func (n NotifyType) String() string {
	if s, ok := notifyNames[n]; ok {
		return s
	}
	if n.IsError() {
		return fmt.Sprintf("UNKNOWN_ERROR(%d)", uint16(n))
	}
	return fmt.Sprintf("UNKNOWN_STATUS(%d)", uint16(n))
}

// otherNotifyNames are the IANA "IKEv2 Notify Message Types" this package
// has no use for but logs by name, so that an operator reading a refusal or
// a peer's capabilities does not look numbers up.
var otherNotifyNames = map[NotifyType]string{
	40: "UNACCEPTABLE_ADDRESSES", 41: "UNEXPECTED_NAT_DETECTED", 42: "USE_ASSIGNED_HoA",
	45: "INVALID_GROUP_ID", 46: "AUTHORIZATION_FAILED",
	16386: "ADDITIONAL_TS_POSSIBLE", 16387: "IPCOMP_SUPPORTED", 16392: "HTTP_CERT_LOOKUP_SUPPORTED",
	16396: "MOBIKE_SUPPORTED", 16397: "ADDITIONAL_IP4_ADDRESS", 16398: "ADDITIONAL_IP6_ADDRESS",
	16399: "NO_ADDITIONAL_ADDRESSES", 16400: "UPDATE_SA_ADDRESSES", 16401: "COOKIE2", 16402: "NO_NATS_ALLOWED",
	16403: "AUTH_LIFETIME", 16404: "MULTIPLE_AUTH_SUPPORTED", 16405: "ANOTHER_AUTH_FOLLOWS",
	16406: "REDIRECT_SUPPORTED", 16407: "REDIRECT", 16408: "REDIRECTED_FROM", 16409: "TICKET_LT_OPAQUE",
	16410: "TICKET_REQUEST", 16411: "TICKET_ACK", 16412: "TICKET_NACK", 16413: "TICKET_OPAQUE",
	16414: "LINK_ID", 16415: "USE_WESP_MODE", 16416: "ROHC_SUPPORTED", 16417: "EAP_ONLY_AUTHENTICATION",
	16418: "CHILDLESS_IKEV2_SUPPORTED", 16419: "QUICK_CRASH_DETECTION", 16420: "IKEV2_MESSAGE_ID_SYNC_SUPPORTED",
	16421: "IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED", 16422: "IKEV2_MESSAGE_ID_SYNC", 16423: "IPSEC_REPLAY_COUNTER_SYNC",
	16424: "SECURE_PASSWORD_METHODS", 16425: "PSK_PERSIST", 16426: "PSK_CONFIRM", 16427: "ERX_SUPPORTED",
	16428: "IFOM_CAPABILITY", 16429: "SENDER_REQUEST_ID", 16432: "CLONE_IKE_SA_SUPPORTED", 16433: "CLONE_IKE_SA",
	16434: "PUZZLE", 16435: "USE_PPK", 16436: "PPK_IDENTITY", 16437: "NO_PPK_AUTH", 16439: "IP4_ALLOWED",
	16440: "IP6_ALLOWED", 16442: "USE_AGGFRAG", 16443: "SUPPORTED_AUTH_METHODS",
}

func init() {
	for n, name := range otherNotifyNames {
		notifyNames[n] = name
	}
}

var notifyNames = map[NotifyType]string{
	UNSUPPORTED_CRITICAL_PAYLOAD: "UNSUPPORTED_CRITICAL_PAYLOAD", INVALID_IKE_SPI: "INVALID_IKE_SPI",
	INVALID_MAJOR_VERSION: "INVALID_MAJOR_VERSION", INVALID_SYNTAX: "INVALID_SYNTAX",
	INVALID_MESSAGE_ID: "INVALID_MESSAGE_ID", INVALID_SPI: "INVALID_SPI",
	NO_PROPOSAL_CHOSEN: "NO_PROPOSAL_CHOSEN", INVALID_KE_PAYLOAD: "INVALID_KE_PAYLOAD",
	AUTHENTICATION_FAILED: "AUTHENTICATION_FAILED", SINGLE_PAIR_REQUIRED: "SINGLE_PAIR_REQUIRED",
	NO_ADDITIONAL_SAS: "NO_ADDITIONAL_SAS", INTERNAL_ADDRESS_FAILURE: "INTERNAL_ADDRESS_FAILURE",
	FAILED_CP_REQUIRED: "FAILED_CP_REQUIRED", TS_UNACCEPTABLE: "TS_UNACCEPTABLE",
	INVALID_SELECTORS: "INVALID_SELECTORS", TEMPORARY_FAILURE: "TEMPORARY_FAILURE",
	CHILD_SA_NOT_FOUND: "CHILD_SA_NOT_FOUND", STATE_NOT_FOUND: "STATE_NOT_FOUND",
	INITIAL_CONTACT: "INITIAL_CONTACT", SET_WINDOW_SIZE: "SET_WINDOW_SIZE",
	NAT_DETECTION_SOURCE_IP: "NAT_DETECTION_SOURCE_IP", NAT_DETECTION_DESTINATION_IP: "NAT_DETECTION_DESTINATION_IP",
	COOKIE: "COOKIE", USE_TRANSPORT_MODE: "USE_TRANSPORT_MODE", REKEY_SA: "REKEY_SA",
	ESP_TFC_PADDING_NOT_SUPPORTED: "ESP_TFC_PADDING_NOT_SUPPORTED", NON_FIRST_FRAGMENTS_ALSO: "NON_FIRST_FRAGMENTS_ALSO",
	IKEV2_FRAGMENTATION_SUPPORTED: "IKEV2_FRAGMENTATION_SUPPORTED", SIGNATURE_HASH_ALGORITHMS: "SIGNATURE_HASH_ALGORITHMS",
	INTERMEDIATE_EXCHANGE_SUPPORTED: "INTERMEDIATE_EXCHANGE_SUPPORTED", ADDITIONAL_KEY_EXCHANGE: "ADDITIONAL_KEY_EXCHANGE",
}

// ID types of identification payloads.
const (
	ID_IPV4_ADDR   uint8 = 1
	ID_FQDN        uint8 = 2
	ID_RFC822_ADDR uint8 = 3
	ID_IPV6_ADDR   uint8 = 5
	ID_DER_ASN1_DN uint8 = 9
	ID_KEY_ID      uint8 = 11
)

// Authentication methods.
const (
	AuthSharedKey        uint8 = 2
	AuthECDSA256         uint8 = 9  // RFC 4754: P-256 with SHA-256
	AuthECDSA384         uint8 = 10 // RFC 4754: P-384 with SHA-384
	AuthDigitalSignature uint8 = 14 // RFC 7427
)

// Certificate encodings.
const CertX509Signature uint8 = 4

// Hash algorithm identifiers of SIGNATURE_HASH_ALGORITHMS (RFC 7427).
const (
	HashSHA256   uint16 = 2
	HashSHA384   uint16 = 3
	HashSHA512   uint16 = 4
	HashIdentity uint16 = 5
)

// Traffic selector types.
const (
	TSIPv4AddrRange uint8 = 7
	TSIPv6AddrRange uint8 = 8
)
