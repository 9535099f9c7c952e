"""Wire constants of Psiphon's OSSH (see psiphon-wire.md section 1.1)."""

SEED_LENGTH = 16
KEY_LENGTH = 16
HASH_ITERATIONS = 6000
MAX_PADDING = 8192
MIN_CLIENT_PADDING = 32  # also the server PRNG seed length taken from the padding
MAGIC_VALUE = 0x0BF5CA7E
CLIENT_TO_SERVER_LABEL = b"client_to_server"
SERVER_TO_CLIENT_LABEL = b"server_to_client"
PREAMBLE_HEADER_LENGTH = 24  # seed(16) + magic(4) + padding length(4)

PREFIX_TERMINATOR_LENGTH = 16
PREFIX_MAX_LENGTH = 65536  # how far past the first 24 bytes we search for a terminator
PREFIX_MAX_HEADER_LENGTH = 4096
PREFIX_HEADER_VERSION = 1

SSH_MAX_LINE_LENGTH = 1024
SSH_PACKET_PREFIX_LENGTH = 5
SSH_MAX_PACKET_LENGTH = 256 * 1024
SSH_MSG_NEWKEYS = 21
SSH_MAX_PADDING_LENGTH = 255
SSH_PADDING_MULTIPLE = 16
SERVER_LINE_PADDING_MAX_LINE = 512

PADDING_PRNG_SALT = "obfuscated-ssh-padding"
PREFIX_SPLIT_PRNG_SALT = "obfuscated-ssh-prefix-split"
