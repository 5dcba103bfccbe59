/* SPDX-License-Identifier: Apache-2.0 */
/* The demo election definition (data/kz2023.json), linked into ballotd so
 * that `ballotd` with no arguments runs the demo. BAL_EMBEDDED_DEFN is the
 * file's path, set by daemon/CMakeLists.txt. */
	.section .rodata
	.global bal_embedded_defn
	.global bal_embedded_defn_end
	.balign 16
bal_embedded_defn:
	.incbin BAL_EMBEDDED_DEFN
bal_embedded_defn_end:
	.byte 0
	.section .note.GNU-stack,"",@progbits
