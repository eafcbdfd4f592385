/* mujoco_render.c - offscreen pictures of the MuJoCo tasks.
 *
 * MuJoCo draws with OpenGL but needs the caller to make a context current first. We
 * open one without a display: EGL (a GPU through its device platform, else Mesa's
 * software device) or, failing that, OSMesa. Both libraries are opened with dlopen, so
 * libmileenvs links no GL library and a machine without them only loses rendering
 * (MILE_ENV_ERR_UNSUPPORTED). The constants below are the fixed values of the EGL and
 * OSMesa specifications, written out so that no GL headers are needed to build. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mujoco_common.h"

/* EGL 1.5 (Khronos egl.h, eglext.h) */
typedef void *egl_display, *egl_config, *egl_context, *egl_surface, *egl_device;
enum {
  EGL_SURFACE_TYPE_ = 0x3033, EGL_PBUFFER_BIT_ = 0x0001, EGL_RENDERABLE_TYPE_ = 0x3040, EGL_OPENGL_BIT_ = 0x0008,
  EGL_RED_SIZE_ = 0x3024, EGL_GREEN_SIZE_ = 0x3023, EGL_BLUE_SIZE_ = 0x3022, EGL_DEPTH_SIZE_ = 0x3025,
  EGL_WIDTH_ = 0x3057, EGL_HEIGHT_ = 0x3056, EGL_NONE_ = 0x3038, EGL_OPENGL_API_ = 0x30A2,
  EGL_EXTENSIONS_ = 0x3055, EGL_PLATFORM_DEVICE_EXT_ = 0x313F
};
/* OSMesa (GL/osmesa.h): OSMESA_RGBA = GL_RGBA */
enum { OSMESA_RGBA_ = 0x1908, GL_UNSIGNED_BYTE_ = 0x1401 };

typedef struct egl_api {
  void *(*get_proc_address)(const char *);
  egl_display (*get_display)(void *);
  unsigned (*initialize)(egl_display, int32_t *, int32_t *);
  unsigned (*terminate)(egl_display);
  unsigned (*bind_api)(unsigned);
  unsigned (*choose_config)(egl_display, const int32_t *, egl_config *, int32_t, int32_t *);
  egl_context (*create_context)(egl_display, egl_config, egl_context, const int32_t *);
  unsigned (*destroy_context)(egl_display, egl_context);
  egl_surface (*create_pbuffer_surface)(egl_display, egl_config, const int32_t *);
  unsigned (*destroy_surface)(egl_display, egl_surface);
  unsigned (*make_current)(egl_display, egl_surface, egl_surface, egl_context);
  const char *(*query_string)(egl_display, int32_t);
  /* extensions, NULL when absent */
  unsigned (*query_devices)(int32_t, egl_device *, int32_t *);
  egl_display (*get_platform_display)(unsigned, void *, const int32_t *);
} egl_api;

typedef struct osmesa_api {
  void *(*create_context_ext)(unsigned, int, int, int, void *);
  void (*destroy_context)(void *);
  unsigned char (*make_current)(void *, void *, unsigned, int, int);
} osmesa_api;

enum { BACKEND_NONE = 0, BACKEND_EGL = 1, BACKEND_OSMESA = 2 };

/* The process-wide choice: MuJoCo's GL loader binds to the first GL library it finds,
 * so one process uses one backend. The libraries stay loaded (unloading GL drivers is
 * not safe). */
static struct {
  int backend;
  char why[384]; /* when backend is NONE: what failed */
  egl_api egl;
  osmesa_api osmesa;
} gl;
static pthread_once_t gl_once = PTHREAD_ONCE_INIT;

struct mile_mj_gl {
  int backend;
  egl_display display;
  egl_context egl_ctx;
  egl_surface surface;
  void *osmesa_ctx;
  unsigned char osmesa_buffer[4 * 16 * 16]; /* MuJoCo draws into its own framebuffer */
  int made; /* scene and context made */
  mjvScene scene;
  mjvCamera camera;
  mjvOption option;
  mjrContext context;
  unsigned char *pixels; /* bottom row first, as OpenGL reads them */
  size_t pixels_size;
};

#define LOAD(lib, api, field, name)                                   \
  do {                                                                \
    *(void **)&(api)->field = dlsym(lib, name);                       \
    if ((api)->field == NULL) return "is missing " name;              \
  } while (0)

static const char *load_egl(void) {
  void *lib = dlopen("libEGL.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) return "libEGL.so.1 cannot be opened";
  egl_api *e = &gl.egl;
  LOAD(lib, e, get_proc_address, "eglGetProcAddress");
  LOAD(lib, e, get_display, "eglGetDisplay");
  LOAD(lib, e, initialize, "eglInitialize");
  LOAD(lib, e, terminate, "eglTerminate");
  LOAD(lib, e, bind_api, "eglBindAPI");
  LOAD(lib, e, choose_config, "eglChooseConfig");
  LOAD(lib, e, create_context, "eglCreateContext");
  LOAD(lib, e, destroy_context, "eglDestroyContext");
  LOAD(lib, e, create_pbuffer_surface, "eglCreatePbufferSurface");
  LOAD(lib, e, destroy_surface, "eglDestroySurface");
  LOAD(lib, e, make_current, "eglMakeCurrent");
  LOAD(lib, e, query_string, "eglQueryString");
  *(void **)&e->query_devices = e->get_proc_address("eglQueryDevicesEXT");
  *(void **)&e->get_platform_display = e->get_proc_address("eglGetPlatformDisplayEXT");
  return NULL;
}

static const char *load_osmesa(void) {
  /* global, so that MuJoCo's loader finds OSMesaGetProcAddress first */
  void *lib = dlopen("libOSMesa.so.8", RTLD_NOW | RTLD_GLOBAL);
  if (lib == NULL) lib = dlopen("libOSMesa.so", RTLD_NOW | RTLD_GLOBAL);
  if (lib == NULL) return "libOSMesa.so.8 cannot be opened";
  osmesa_api *o = &gl.osmesa;
  LOAD(lib, o, create_context_ext, "OSMesaCreateContextExt");
  LOAD(lib, o, destroy_context, "OSMesaDestroyContext");
  LOAD(lib, o, make_current, "OSMesaMakeCurrent");
  return NULL;
}

#undef LOAD

/* An EGL display that initialises: the first device (a GPU where there is one, Mesa's
 * software device otherwise), else the default display. */
static egl_display open_egl_display(void) {
  egl_api *e = &gl.egl;
  if (e->query_devices != NULL && e->get_platform_display != NULL) {
    egl_device devices[8];
    int32_t count = 0;
    if (e->query_devices(8, devices, &count)) {
      for (int32_t i = 0; i < count; i++) {
        egl_display display = e->get_platform_display(EGL_PLATFORM_DEVICE_EXT_, devices[i], NULL);
        if (display != NULL && e->initialize(display, NULL, NULL)) return display;
      }
    }
  }
  egl_display display = e->get_display(NULL); /* EGL_DEFAULT_DISPLAY */
  if (display != NULL && e->initialize(display, NULL, NULL)) return display;
  return NULL;
}

static void choose_backend(void) {
  /* MUJOCO_GL as MuJoCo's Python bindings read it; other values (glfw, which needs a
   * window) leave the choice to us */
  const char *want = getenv("MUJOCO_GL");
  int only_egl = want != NULL && strcmp(want, "egl") == 0;
  int only_osmesa = want != NULL && strcmp(want, "osmesa") == 0;
  int try_egl = !only_osmesa, try_osmesa = !only_egl;
  const char *egl_why = "not tried ($MUJOCO_GL)", *osmesa_why = "not tried ($MUJOCO_GL)";
  if (try_egl) {
    egl_why = load_egl();
    if (egl_why == NULL) {
      /* an EGL library without a usable display (no GPU driver, no Mesa) counts as absent */
      egl_display display = open_egl_display();
      if (display != NULL) {
        gl.egl.terminate(display);
        gl.backend = BACKEND_EGL;
        return;
      }
      egl_why = "no EGL display could be initialised";
    }
  }
  if (try_osmesa) {
    osmesa_why = load_osmesa();
    if (osmesa_why == NULL) {
      gl.backend = BACKEND_OSMESA;
      return;
    }
  }
  snprintf(gl.why, sizeof gl.why, "EGL: %s; OSMesa: %s", egl_why, osmesa_why);
}

/* Make the env's own context current, creating it on first use. */
static mile_env_status make_current(mile_mj *mj, mile_mj_gl *r) {
  if (r->backend == BACKEND_EGL) {
    egl_api *e = &gl.egl;
    if (r->egl_ctx == NULL) {
      r->display = open_egl_display();
      if (r->display == NULL) return mile_env_error(MILE_ENV_ERR_UNSUPPORTED, "%s: EGL display lost", mj->task_name);
      static const int32_t attributes[] = {EGL_SURFACE_TYPE_, EGL_PBUFFER_BIT_, EGL_RENDERABLE_TYPE_, EGL_OPENGL_BIT_,
                                           EGL_RED_SIZE_,     8,                EGL_GREEN_SIZE_,      8,
                                           EGL_BLUE_SIZE_,    8,                EGL_DEPTH_SIZE_,      24,
                                           EGL_NONE_};
      static const int32_t pbuffer[] = {EGL_WIDTH_, 16, EGL_HEIGHT_, 16, EGL_NONE_};
      egl_config config = NULL;
      int32_t count = 0;
      if (!e->bind_api(EGL_OPENGL_API_) || !e->choose_config(r->display, attributes, &config, 1, &count) || count < 1)
        return mile_env_error(MILE_ENV_ERR_UNSUPPORTED, "%s: EGL offers no desktop-OpenGL configuration",
                              mj->task_name);
      r->egl_ctx = e->create_context(r->display, config, NULL, NULL);
      if (r->egl_ctx == NULL)
        return mile_env_error(MILE_ENV_ERR_UNSUPPORTED, "%s: eglCreateContext failed", mj->task_name);
      /* a tiny pbuffer keeps this working where surfaceless contexts are not offered */
      r->surface = e->create_pbuffer_surface(r->display, config, pbuffer);
    }
    if (!e->make_current(r->display, r->surface, r->surface, r->egl_ctx))
      return mile_env_error(MILE_ENV_ERR_UNSUPPORTED, "%s: eglMakeCurrent failed", mj->task_name);
    return MILE_ENV_OK;
  }
  osmesa_api *o = &gl.osmesa;
  if (r->osmesa_ctx == NULL) {
    r->osmesa_ctx = o->create_context_ext(OSMESA_RGBA_, 24, 8, 0, NULL);
    if (r->osmesa_ctx == NULL)
      return mile_env_error(MILE_ENV_ERR_UNSUPPORTED, "%s: OSMesaCreateContextExt failed", mj->task_name);
  }
  if (!o->make_current(r->osmesa_ctx, r->osmesa_buffer, GL_UNSIGNED_BYTE_, 16, 16))
    return mile_env_error(MILE_ENV_ERR_UNSUPPORTED, "%s: OSMesaMakeCurrent failed", mj->task_name);
  return MILE_ENV_OK;
}

static void release_current(mile_mj_gl *r) {
  if (r->backend == BACKEND_EGL && r->display != NULL) gl.egl.make_current(r->display, NULL, NULL, NULL);
}

void mile_mj_gl_free(mile_mj_gl *r) {
  if (r == NULL) return;
  if (r->made) {
    /* freeing GL objects needs the context current */
    if (r->backend == BACKEND_EGL && r->egl_ctx != NULL)
      gl.egl.make_current(r->display, r->surface, r->surface, r->egl_ctx);
    if (r->backend == BACKEND_OSMESA && r->osmesa_ctx != NULL)
      gl.osmesa.make_current(r->osmesa_ctx, r->osmesa_buffer, GL_UNSIGNED_BYTE_, 16, 16);
    mjr_freeContext(&r->context);
    mjv_freeScene(&r->scene);
  }
  if (r->backend == BACKEND_EGL && r->display != NULL) {
    gl.egl.make_current(r->display, NULL, NULL, NULL);
    if (r->surface != NULL) gl.egl.destroy_surface(r->display, r->surface);
    if (r->egl_ctx != NULL) gl.egl.destroy_context(r->display, r->egl_ctx);
  }
  if (r->backend == BACKEND_OSMESA && r->osmesa_ctx != NULL) gl.osmesa.destroy_context(r->osmesa_ctx);
  free(r->pixels);
  free(r);
}

typedef struct render_call {
  mile_mj *mj;
  mile_mj_gl *r;
  int width, height, remake;
} render_call;

/* The MuJoCo part of a render; runs under the error trap. */
static void draw(void *arg) {
  render_call *c = arg;
  mile_mj_gl *r = c->r;
  mjModel *m = c->mj->m;
  if (c->remake) {
    if (r->made) {
      mjr_freeContext(&r->context);
      mjv_freeScene(&r->scene);
      r->made = 0;
    }
    /* MuJoCo sizes its offscreen framebuffer from the model */
    if (m->vis.global.offwidth < c->width) m->vis.global.offwidth = c->width;
    if (m->vis.global.offheight < c->height) m->vis.global.offheight = c->height;
    mjv_defaultScene(&r->scene);
    mjr_defaultContext(&r->context);
    r->made = 1; /* from here freeing is safe, even if making fails half-way */
    mjv_makeScene(m, &r->scene, 2000);
    mjr_makeContext(m, &r->context, mjFONTSCALE_100);
    mjv_defaultOption(&r->option);
    mjv_defaultCamera(&r->camera);
    /* the robot's side of the table, from above and to the right */
    r->camera.type = mjCAMERA_FREE;
    r->camera.lookat[0] = -0.08;
    r->camera.lookat[1] = 0.66;
    r->camera.lookat[2] = 0.08;
    r->camera.distance = 1.05;
    r->camera.azimuth = 125.0;
    r->camera.elevation = -30.0;
  }
  mjr_setBuffer(mjFB_OFFSCREEN, &r->context);
  mjrRect viewport = {0, 0, c->width, c->height};
  mjv_updateScene(m, c->mj->d, &r->option, NULL, &r->camera, mjCAT_ALL, &r->scene);
  mjr_render(viewport, &r->scene, &r->context);
  mjr_readPixels(r->pixels, NULL, viewport, &r->context);
}

mile_env_status mile_mj_render(mile_env *env, uint8_t *rgb, int32_t width, int32_t height) {
  mile_mj *mj = env->impl;
  pthread_once(&gl_once, choose_backend);
  if (gl.backend == BACKEND_NONE)
    return mile_env_error(MILE_ENV_ERR_UNSUPPORTED,
                          "%s: no offscreen OpenGL for rendering (%s); install libegl1 + a Mesa or GPU driver, or "
                          "libosmesa6", mj->task_name, gl.why);
  if (mj->render == NULL) {
    mj->render = calloc(1, sizeof *mj->render);
    if (mj->render == NULL) return mile_env_error(MILE_ENV_ERR_NOMEM, "%s: out of memory for rendering", mj->task_name);
    mj->render->backend = gl.backend;
  }
  mile_mj_gl *r = mj->render;
  size_t size = (size_t)width * (size_t)height * 3;
  if (size > r->pixels_size) {
    unsigned char *pixels = realloc(r->pixels, size);
    if (pixels == NULL) return mile_env_error(MILE_ENV_ERR_NOMEM, "%s: out of memory for rendering", mj->task_name);
    r->pixels = pixels;
    r->pixels_size = size;
  }
  mile_env_status status = make_current(mj, r);
  if (status != MILE_ENV_OK) return status;
  render_call call = {mj, r, width, height,
                      !r->made || mj->m->vis.global.offwidth < width || mj->m->vis.global.offheight < height};
  status = mile_mj_trapped(mj, draw, &call, "rendering");
  release_current(r);
  if (status != MILE_ENV_OK) {
    /* the context may be half made: start over next time */
    mj->render = NULL;
    mile_mj_gl_free(r);
    return status;
  }
  for (int32_t y = 0; y < height; y++) /* OpenGL's rows run bottom to top */
    memcpy(rgb + (size_t)y * width * 3, r->pixels + (size_t)(height - 1 - y) * width * 3, (size_t)width * 3);
  return MILE_ENV_OK;
}
