// The world `transform`'s exports (wit/transform.wit) over the wit-bindgen C bindings
// (guest-plugins/c-bindings): config pairs in, one outcome per record out.
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "transform.h"

// transform.c asks for the world's component-type object to be linked in, which would carry
// the WIT metadata; the build embeds that metadata when it makes the component instead.
void __component_type_object_force_link_transform(void) {}

static filter current;
static bool initialised;

static const char not_initialised[] =
    "not initialised: process was called before a successful init";

// A string the canonical ABI hands back to the host, which frees it after the call
// (cabi_post_*); so it must come from malloc.
static void take(transform_string_t *out, str s) {
    out->ptr = xmalloc(s.len);
    if (s.len) memcpy(out->ptr, s.ptr, s.len);
    out->len = s.len;
}

bool exports_transform_init(transform_list_tuple2_string_string_t *pairs, transform_string_t *err) {
    pair *kv = xmalloc(pairs->len * sizeof(pair));
    for (size_t i = 0; i < pairs->len; i++) {
        kv[i].key = (str){(const char *)pairs->ptr[i].f0.ptr, pairs->ptr[i].f0.len};
        kv[i].value = (str){(const char *)pairs->ptr[i].f1.ptr, pairs->ptr[i].f1.len};
    }
    if (initialised) filter_free(&current);
    buf msg = {0};
    initialised = filter_init(&current, (config){kv, pairs->len}, &msg);
    free(kv);
    transform_list_tuple2_string_string_free(pairs);
    if (!initialised) {
        take(err, buf_view(&msg));
        buf_free(&msg);
        return false;
    }
    filter_summary(&current, &msg);
    transform_string_t line = {(uint8_t *)msg.ptr, msg.len};
    sluice_transform_log_log(SLUICE_TRANSFORM_LOG_LEVEL_INFO, &line);
    buf_free(&msg);
    return true;
}

void exports_transform_process(transform_list_record_t *batch, transform_list_outcome_t *ret) {
    ret->len = batch->len;
    ret->ptr = xmalloc(batch->len * sizeof(transform_outcome_t));
    buf reason = {0};
    for (size_t i = 0; i < batch->len; i++) {
        transform_outcome_t *o = &ret->ptr[i];
        const transform_list_u8_t *value = &batch->ptr[i].value;
        reason.len = 0;
        verdict v = FAIL;
        if (initialised) v = filter_apply(&current, value->ptr, value->len, &reason);
        else buf_puts(&reason, not_initialised);
        o->tag = v == KEEP   ? SLUICE_TRANSFORM_TYPES_OUTCOME_KEEP
                 : v == DROP ? SLUICE_TRANSFORM_TYPES_OUTCOME_DROP
                             : SLUICE_TRANSFORM_TYPES_OUTCOME_FAIL;
        if (v == FAIL) take(&o->val.fail, buf_view(&reason));
    }
    buf_free(&reason);
    transform_list_record_free(batch);
}
