/* routes.c - the route table. Literal paths come before captures. */
#include "api/api.h"

const sd_route sd_api_routes[] = {
    {"POST", "/sessions", sd_api_session_create, SD_ROUTE_BODY},
    {"POST", "/sessions/validate", sd_api_validate_token, SD_ROUTE_BODY_OPTIONAL},
    {"POST", "/sessions/bulk-delete", sd_api_bulk_delete, SD_ROUTE_BODY},
    {"GET", "/sessions/{sessionId}", sd_api_session_get, SD_ROUTE_NO_BODY},
    {"PUT", "/sessions/{sessionId}", sd_api_session_update, SD_ROUTE_BODY},
    {"DELETE", "/sessions/{sessionId}", sd_api_session_delete, SD_ROUTE_NO_BODY},
    {"GET", "/sessions/{sessionId}/validate", sd_api_validate_id, SD_ROUTE_NO_BODY},
    {"GET", "/users/{userId}/sessions", sd_api_user_list, SD_ROUTE_NO_BODY},
    {"DELETE", "/users/{userId}/sessions", sd_api_user_revoke, SD_ROUTE_NO_BODY},
    {"GET", "/auth", sd_api_forward_auth, SD_ROUTE_NO_BODY},
    {"POST", "/introspect", sd_api_introspect, SD_ROUTE_FORM},
    {"GET", "/healthz", sd_api_healthz, SD_ROUTE_NO_BODY},
    {"GET", "/readyz", sd_api_readyz, SD_ROUTE_NO_BODY},
    {"GET", "/metrics", sd_api_metrics, SD_ROUTE_NO_BODY},
};

const int sd_api_nroutes = (int)(sizeof sd_api_routes / sizeof sd_api_routes[0]);
