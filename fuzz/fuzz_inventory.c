/* fuzz_inventory.c: the inventory and cost file readers of plan --inventory
 * (src/sched/inventory.c): a file from anywhere; parsing must never crash
 * or read outside the buffer, and a parsed inventory must obey its own
 * totals with no control byte in a name. The first byte picks the reader;
 * a parsed inventory is also planned (the splitter and the estimate for
 * several machines see hostile sizes). */
#include "inventory.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void
inventory_case(const char *p, size_t len)
{
	struct sched_inventory inv;
	struct sched_plan_options o = { 0 };
	struct sched_plan plan;
	struct sched_cost c;
	const char *error;
	uint64_t m = 0;

	if (sched_inventory_parse("fuzz", p, len, &inv, &error) < 0)
		return;
	for (size_t a = 0; a < inv.n; a++) {
		uint64_t am = 0;

		for (const char *q = inv.names[a]; *q != '\0'; q++)
			if ((unsigned char)*q < 0x20 || *q == 0x7f)
				abort();
		for (size_t k = 0; k < inv.est[a].n_folders; k++)
			am += inv.est[a].folders[k].messages;
		if (am != inv.est[a].messages)
			abort();
		m += am;
	}
	if (m != inv.messages || inv.n == 0)
		abort();
	sched_cost_default(&c);
	o.workers = 3;
	o.split = true;
	o.uid_split = len % 2 == 0;
	if (inv.n < 200) {
		sched_plan_build(inv.est, inv.n, &c, &o, &plan);
		(void)sched_predict_machines(&c, &plan, 2, 2, 0, 1e6, &error);
		sched_plan_free(&plan);
	}
	sched_inventory_free(&inv);
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct sched_cost c;
	const char *error;

	if (size < 1 || size > 1 << 16)
		return 0;
	if (data[0] & 1)
		inventory_case((const char *)data + 1, size - 1);
	else
		(void)sched_cost_parse("fuzz", (const char *)data + 1, size - 1, &c,
		                       &error);
	return 0;
}
