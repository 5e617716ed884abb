/* Layer probe (tests/layers/check_layers.py): must NOT compile with the flags of its layer. */
#include "tw_cli.h"

int tw_layer_probe(void);
int tw_layer_probe(void) {
    return 0;
}
