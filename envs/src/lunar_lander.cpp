/* lunar_lander.cpp - Gymnasium's LunarLander-v3 (discrete and continuous) on Box2D 2.4.1.
 *
 * The only C++ in mile: Box2D is a C++ library, so the task lives behind the C task
 * table of env_internal.h (`extern "C"` objects at the end). Constants, reset order,
 * engine impulses, observation scaling, shaping reward and termination follow
 * Gymnasium's lunar_lander.py, so returns mean the same (solved = 200). No exception
 * leaves this file: every entry point converts one into a status. Particles are not
 * simulated: in Gymnasium they exist only when rendering and never touch the physics. */
#include <box2d/box2d.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>

#include "env_internal.h"

namespace {

// Gymnasium's constants (pixels are divided by SCALE to get metres).
constexpr double kFps = 50.0;
constexpr double kScale = 30.0;
constexpr double kMainEnginePower = 13.0;
constexpr double kSideEnginePower = 0.6;
constexpr double kInitialRandom = 1000.0;
constexpr double kLegAway = 20.0, kLegDown = 18.0, kLegW = 2.0, kLegH = 8.0;
constexpr double kLegSpringTorque = 40.0;
constexpr double kSideEngineHeight = 14.0, kSideEngineAway = 12.0;
constexpr double kMainEngineYLocation = 4.0;
constexpr double kViewportW = 600.0, kViewportH = 400.0;
constexpr double kW = kViewportW / kScale; // 20 m
constexpr double kH = kViewportH / kScale; // 13.333 m
constexpr int kChunks = 11;
constexpr int kVelocityIterations = 6 * 30; // part of the physics: keep Gymnasium's values
constexpr int kPositionIterations = 2 * 30;
constexpr int kLanderPolyCount = 6;
constexpr double kLanderPoly[kLanderPolyCount][2] = {{-14, 17}, {-17, 0}, {-17, -10}, {17, -10}, {17, 0}, {14, 17}};
constexpr int kObsDim = 8;
constexpr int kMaxEpisodeSteps = 1000; // gym.make's TimeLimit for both variants

// Gymnasium's default constructor arguments.
constexpr double kDefaultGravity = -10.0;
constexpr double kDefaultWindPower = 15.0;
constexpr double kDefaultTurbulencePower = 1.5;

struct LunarLander;

// Gymnasium's ContactDetector: the lander body touching the ground ends the game;
// each leg tracks whether it touches the ground.
class ContactDetector : public b2ContactListener {
public:
  explicit ContactDetector(LunarLander *env) : env_(env) {}
  void BeginContact(b2Contact *contact) override;
  void EndContact(b2Contact *contact) override;

private:
  LunarLander *env_;
};

struct LunarLander {
  bool continuous = false;
  bool enable_wind = false;
  double gravity = kDefaultGravity;
  double wind_power = kDefaultWindPower;
  double turbulence_power = kDefaultTurbulencePower;

  ContactDetector contacts{this}; // declared before the world: it must outlive it
  std::unique_ptr<b2World> world; // recreated at every reset, as in v3
  b2Body *moon = nullptr;
  b2Body *lander = nullptr;
  b2Body *legs[2] = {nullptr, nullptr}; // legs[0] is Gymnasium's i = -1 leg (x = +0.667 side)
  // Gymnasium's flag (observation 7, 8): set by any begin, cleared by any end, so a foot
  // sliding from one terrain edge onto the next can read 0 while it stands on the ground
  bool leg_contact[2] = {false, false};
  int leg_touches[2] = {0, 0}; // touching ground contacts per leg: what the success rule uses
  bool game_over = false;

  int64_t wind_idx = 0, torque_idx = 0;
  double chunk_x[kChunks] = {};
  double smooth_y[kChunks] = {};
  double helipad_x1 = 0, helipad_x2 = 0, helipad_y = 0;
  bool has_prev_shaping = false;
  double prev_shaping = 0;
};

void ContactDetector::BeginContact(b2Contact *contact) {
  b2Body *a = contact->GetFixtureA()->GetBody(), *b = contact->GetFixtureB()->GetBody();
  if (a == env_->lander || b == env_->lander)
    env_->game_over = true;
  for (int i = 0; i < 2; i++) {
    if (a == env_->legs[i] || b == env_->legs[i]) {
      env_->leg_contact[i] = true;
      env_->leg_touches[i]++;
    }
  }
}

void ContactDetector::EndContact(b2Contact *contact) {
  b2Body *a = contact->GetFixtureA()->GetBody(), *b = contact->GetFixtureB()->GetBody();
  for (int i = 0; i < 2; i++) {
    if (a == env_->legs[i] || b == env_->legs[i]) {
      env_->leg_contact[i] = false;
      env_->leg_touches[i]--;
    }
  }
}

LunarLander *impl_of(mile_env *env) { return static_cast<LunarLander *>(env->impl); }

b2Vec2 vec(double x, double y) { return b2Vec2(static_cast<float>(x), static_cast<float>(y)); }

double clip(double x, double lo, double hi) { return std::min(std::max(x, lo), hi); }

// --- reset: terrain, lander, legs (the order of random draws is Gymnasium's) ---

void build_world(LunarLander &ll, mile_env_rng *rng) {
  ll.world.reset(); // the old world (and its bodies) goes before the new one is built
  ll.world = std::make_unique<b2World>(vec(0, ll.gravity));
  ll.world->SetContactListener(&ll.contacts);
  ll.game_over = false;
  ll.leg_contact[0] = ll.leg_contact[1] = false;
  ll.leg_touches[0] = ll.leg_touches[1] = 0;
  ll.has_prev_shaping = false;

  // terrain: 12 heights (the 12th only feeds the wrap-around of smooth_y[0])
  double height[kChunks + 1];
  for (double &h : height)
    h = mile_env_rng_uniform(rng, 0.0, kH / 2);
  for (int i = 0; i < kChunks; i++)
    ll.chunk_x[i] = kW / (kChunks - 1) * i;
  ll.helipad_x1 = ll.chunk_x[kChunks / 2 - 1];
  ll.helipad_x2 = ll.chunk_x[kChunks / 2 + 1];
  ll.helipad_y = kH / 4;
  for (int i = kChunks / 2 - 2; i <= kChunks / 2 + 2; i++)
    height[i] = ll.helipad_y;
  for (int i = 0; i < kChunks; i++) {
    double before = height[i == 0 ? kChunks : i - 1]; // Python's height[-1]
    ll.smooth_y[i] = 0.33 * (before + height[i] + height[i + 1]);
  }

  b2BodyDef moon_def;
  ll.moon = ll.world->CreateBody(&moon_def);
  b2EdgeShape edge;
  edge.SetTwoSided(vec(0, 0), vec(kW, 0));
  ll.moon->CreateFixture(&edge, 0.0f); // default friction 0.2, as pybox2d's shapes= argument
  for (int i = 0; i < kChunks - 1; i++) {
    edge.SetTwoSided(vec(ll.chunk_x[i], ll.smooth_y[i]), vec(ll.chunk_x[i + 1], ll.smooth_y[i + 1]));
    b2FixtureDef fd;
    fd.shape = &edge;
    fd.density = 0.0f;
    fd.friction = 0.1f;
    ll.moon->CreateFixture(&fd);
  }

  const double initial_x = kW / 2, initial_y = kH;
  b2BodyDef lander_def;
  lander_def.type = b2_dynamicBody;
  lander_def.position = vec(initial_x, initial_y);
  ll.lander = ll.world->CreateBody(&lander_def);
  b2Vec2 hull[kLanderPolyCount];
  for (int i = 0; i < kLanderPolyCount; i++)
    hull[i] = vec(kLanderPoly[i][0] / kScale, kLanderPoly[i][1] / kScale);
  b2PolygonShape lander_shape;
  lander_shape.Set(hull, kLanderPolyCount);
  b2FixtureDef lander_fixture;
  lander_fixture.shape = &lander_shape;
  lander_fixture.density = 5.0f;
  lander_fixture.friction = 0.1f;
  lander_fixture.restitution = 0.0f;
  lander_fixture.filter.categoryBits = 0x0010;
  lander_fixture.filter.maskBits = 0x0001; // collides with the ground only
  ll.lander->CreateFixture(&lander_fixture);
  double fx = mile_env_rng_uniform(rng, -kInitialRandom, kInitialRandom);
  double fy = mile_env_rng_uniform(rng, -kInitialRandom, kInitialRandom);
  ll.lander->ApplyForceToCenter(vec(fx, fy), true); // acts during the first world step only

  if (ll.enable_wind) { // numpy's integers(-9999, 9999) excludes the upper bound
    ll.wind_idx = mile_env_rng_integers(rng, -9999, 9999);
    ll.torque_idx = mile_env_rng_integers(rng, -9999, 9999);
  }

  for (int k = 0; k < 2; k++) {
    const int i = k == 0 ? -1 : +1;
    b2BodyDef leg_def;
    leg_def.type = b2_dynamicBody;
    leg_def.position = vec(initial_x - i * kLegAway / kScale, initial_y);
    leg_def.angle = static_cast<float>(i * 0.05);
    ll.legs[k] = ll.world->CreateBody(&leg_def);
    b2PolygonShape leg_shape;
    leg_shape.SetAsBox(static_cast<float>(kLegW / kScale), static_cast<float>(kLegH / kScale));
    b2FixtureDef leg_fixture;
    leg_fixture.shape = &leg_shape;
    leg_fixture.density = 1.0f;
    leg_fixture.restitution = 0.0f;
    leg_fixture.filter.categoryBits = 0x0020;
    leg_fixture.filter.maskBits = 0x0001;
    ll.legs[k]->CreateFixture(&leg_fixture);

    b2RevoluteJointDef joint;
    joint.bodyA = ll.lander;
    joint.bodyB = ll.legs[k];
    joint.localAnchorA = vec(0, 0);
    joint.localAnchorB = vec(i * kLegAway / kScale, kLegDown / kScale);
    joint.enableMotor = true;
    joint.enableLimit = true;
    joint.maxMotorTorque = static_cast<float>(kLegSpringTorque);
    joint.motorSpeed = static_cast<float>(0.3 * i);
    joint.lowerAngle = static_cast<float>(i == -1 ? 0.9 - 0.5 : -0.9);
    joint.upperAngle = static_cast<float>(i == -1 ? 0.9 : -0.9 + 0.5);
    ll.world->CreateJoint(&joint);
  }
}

// --- step ---------------------------------------------------------------------

// Engine throttles decoded from an action: 0 when an engine is off.
struct Throttle {
  double main = 0;      // m_power: 1 (discrete) or 0.5..1 (continuous)
  double side = 0;      // s_power: 1 (discrete) or 0.5..1 (continuous)
  double direction = 0; // -1 left orientation engine, +1 right
};

Throttle decode_action(const LunarLander &ll, const double *action) {
  Throttle t;
  if (ll.continuous) {
    double main = clip(action[0], -1, 1), lateral = clip(action[1], -1, 1);
    if (main > 0)
      t.main = (clip(main, 0, 1) + 1) * 0.5;
    if (std::fabs(lateral) > 0.5) {
      t.direction = lateral > 0 ? 1 : -1;
      t.side = clip(std::fabs(lateral), 0.5, 1);
    }
  } else {
    int a = static_cast<int>(action[0]);
    if (a == 2)
      t.main = 1;
    if (a == 1 || a == 3) {
      t.direction = a - 2;
      t.side = 1;
    }
  }
  return t;
}

void apply_wind(LunarLander &ll) {
  double wind = std::tanh(std::sin(0.02 * ll.wind_idx) + std::sin(M_PI * 0.01 * ll.wind_idx)) * ll.wind_power;
  ll.wind_idx++;
  ll.lander->ApplyForceToCenter(vec(wind, 0), true);
  double torque =
      std::tanh(std::sin(0.02 * ll.torque_idx) + std::sin(M_PI * 0.01 * ll.torque_idx)) * ll.turbulence_power;
  ll.torque_idx++;
  ll.lander->ApplyTorque(static_cast<float>(torque), true);
}

void apply_engines(LunarLander &ll, const Throttle &t, mile_env_rng *rng) {
  const double angle = ll.lander->GetAngle();
  const double tip[2] = {std::sin(angle), std::cos(angle)};
  const double side[2] = {-tip[1], tip[0]};
  // drawn every step, even when no engine fires: the stream must not depend on the action
  const double disp0 = mile_env_rng_uniform(rng, -1.0, 1.0) / kScale;
  const double disp1 = mile_env_rng_uniform(rng, -1.0, 1.0) / kScale;
  const b2Vec2 pos = ll.lander->GetPosition();

  if (t.main > 0) {
    double ox = tip[0] * (kMainEngineYLocation / kScale + 2 * disp0) + side[0] * disp1;
    double oy = -tip[1] * (kMainEngineYLocation / kScale + 2 * disp0) - side[1] * disp1;
    ll.lander->ApplyLinearImpulse(vec(-ox * kMainEnginePower * t.main, -oy * kMainEnginePower * t.main),
                                  vec(pos.x + ox, pos.y + oy), true);
  }
  if (t.side > 0) {
    double lever = 3 * disp1 + t.direction * kSideEngineAway / kScale;
    double ox = tip[0] * disp0 + side[0] * lever;
    double oy = -tip[1] * disp0 - side[1] * lever;
    // 17 px sideways but SIDE_ENGINE_HEIGHT up: Gymnasium's asymmetry, kept on purpose
    b2Vec2 at = vec(pos.x + ox - tip[0] * 17 / kScale, pos.y + oy + tip[1] * kSideEngineHeight / kScale);
    ll.lander->ApplyLinearImpulse(vec(-ox * kSideEnginePower * t.side, -oy * kSideEnginePower * t.side), at, true);
  }
}

void observe(const LunarLander &ll, double *obs) {
  const b2Vec2 pos = ll.lander->GetPosition();
  const b2Vec2 vel = ll.lander->GetLinearVelocity();
  obs[0] = (pos.x - kW / 2) / (kW / 2);
  obs[1] = (pos.y - (ll.helipad_y + kLegDown / kScale)) / (kH / 2);
  obs[2] = vel.x * (kW / 2) / kFps;
  obs[3] = vel.y * (kH / 2) / kFps;
  obs[4] = ll.lander->GetAngle();
  obs[5] = 20.0 * ll.lander->GetAngularVelocity() / kFps;
  obs[6] = ll.leg_contact[0] ? 1.0 : 0.0;
  obs[7] = ll.leg_contact[1] ? 1.0 : 0.0;
}

// Landed between the flags and at rest. "At rest" is Box2D's sleep (the whole lander +
// legs island slower than 0.01 m/s and 2 deg/s for 0.5 s), the event that also gives the
// +100: an instantaneous speed test flickers on and off while the legs settle.
bool landed_at_rest(const LunarLander &ll) {
  if (ll.game_over || ll.leg_touches[0] <= 0 || ll.leg_touches[1] <= 0) return false;
  const double x = ll.lander->GetPosition().x;
  return x >= ll.helipad_x1 && x <= ll.helipad_x2 && !ll.lander->IsAwake();
}

// One Gymnasium step: wind, engines, world step, observation, reward, termination.
mile_env_status advance(mile_env *env, const double *action, double *obs, mile_env_step_result *result) {
  LunarLander &ll = *impl_of(env);
  if (ll.enable_wind && !(ll.leg_contact[0] || ll.leg_contact[1]))
    apply_wind(ll);
  const Throttle t = decode_action(ll, action);
  apply_engines(ll, t, &env->rng);
  ll.world->Step(static_cast<float>(1.0 / kFps), kVelocityIterations, kPositionIterations);

  double state[kObsDim];
  observe(ll, state);
  for (double v : state)
    if (!std::isfinite(v))
      return mile_env_error(MILE_ENV_ERR_SIM, "%s: the simulation produced a non-finite state", env->task->name);

  // reward from the unrounded state, as Gymnasium computes it before the float32 cast
  double shaping = -100 * std::sqrt(state[0] * state[0] + state[1] * state[1]) -
                   100 * std::sqrt(state[2] * state[2] + state[3] * state[3]) - 100 * std::fabs(state[4]) +
                   10 * state[6] + 10 * state[7];
  double reward = ll.has_prev_shaping ? shaping - ll.prev_shaping : 0.0;
  ll.prev_shaping = shaping;
  ll.has_prev_shaping = true;
  reward -= t.main * 0.30;
  reward -= t.side * 0.03;

  int terminated = 0;
  if (ll.game_over || std::fabs(state[0]) >= 1.0) { // crash or out of view: replaces the reward
    terminated = 1;
    reward = -100;
  }
  if (!ll.lander->IsAwake()) { // Box2D put the lander to sleep: landed (wins over a crash)
    terminated = 1;
    reward = +100;
  }
  // Gymnasium returns float32 observations
  for (int i = 0; i < kObsDim; i++)
    obs[i] = static_cast<float>(state[i]);
  result->reward = reward;
  result->terminated = terminated;
  result->truncated = 0;
  result->success = landed_at_rest(ll) ? 1 : 0;
  return MILE_ENV_OK;
}

// --- rendering: a scanline rasteriser over the world's polygons ----------------

struct Rgb {
  uint8_t r, g, b;
};
constexpr Rgb kSky = {0, 0, 0}, kGround = {255, 255, 255};
constexpr Rgb kBodyFill = {128, 102, 230}, kBodyOutline = {77, 77, 128};
constexpr Rgb kFlag = {204, 204, 0}, kPole = {255, 255, 255};
constexpr int kMaxPolyPoints = 8;

struct Canvas {
  uint8_t *rgb;
  int width, height;
  // world metres to pixel coordinates (origin top-left, y down)
  double px(double x) const { return x / kW * width; }
  double py(double y) const { return (1.0 - y / kH) * height; }
  void put(int x, int y, Rgb c) {
    if (x < 0 || y < 0 || x >= width || y >= height)
      return;
    uint8_t *p = rgb + (static_cast<size_t>(y) * width + x) * 3;
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
  }
};

// Even-odd fill of a polygon given in pixel coordinates; a pixel is inside when its centre is.
void fill_polygon(Canvas &cv, const double (*p)[2], int n, Rgb c) {
  double ymin = p[0][1], ymax = p[0][1];
  for (int i = 1; i < n; i++)
    ymin = std::min(ymin, p[i][1]), ymax = std::max(ymax, p[i][1]);
  int row0 = std::max(0, static_cast<int>(std::floor(ymin))), row1 = std::min(cv.height - 1, static_cast<int>(ymax));
  for (int row = row0; row <= row1; row++) {
    double yc = row + 0.5, xs[kMaxPolyPoints];
    int count = 0;
    for (int i = 0, j = n - 1; i < n; j = i++) {
      if ((p[i][1] <= yc) != (p[j][1] <= yc))
        xs[count++] = p[j][0] + (yc - p[j][1]) * (p[i][0] - p[j][0]) / (p[i][1] - p[j][1]);
    }
    for (int i = 1; i < count; i++) // insertion sort: at most 8 crossings
      for (int k = i; k > 0 && xs[k - 1] > xs[k]; k--)
        std::swap(xs[k - 1], xs[k]);
    for (int k = 0; k + 1 < count; k += 2) {
      int x0 = std::max(0, static_cast<int>(std::ceil(xs[k] - 0.5)));
      int x1 = std::min(cv.width - 1, static_cast<int>(std::ceil(xs[k + 1] - 0.5)) - 1);
      for (int x = x0; x <= x1; x++)
        cv.put(x, row, c);
    }
  }
}

void draw_line(Canvas &cv, double xa, double ya, double xb, double yb, Rgb c) {
  int steps = static_cast<int>(std::ceil(std::max(std::fabs(xb - xa), std::fabs(yb - ya)))) + 1;
  if (steps > 4 * (cv.width + cv.height))
    return; // far off screen
  for (int s = 0; s <= steps; s++) {
    double f = static_cast<double>(s) / steps;
    cv.put(static_cast<int>(std::floor(xa + f * (xb - xa))), static_cast<int>(std::floor(ya + f * (yb - ya))), c);
  }
}

void draw_body(Canvas &cv, const b2Body *body) {
  for (const b2Fixture *f = body->GetFixtureList(); f != nullptr; f = f->GetNext()) {
    if (f->GetType() != b2Shape::e_polygon)
      continue;
    const b2PolygonShape *shape = static_cast<const b2PolygonShape *>(f->GetShape());
    double pts[kMaxPolyPoints][2];
    int n = std::min(shape->m_count, kMaxPolyPoints);
    for (int i = 0; i < n; i++) {
      b2Vec2 w = b2Mul(body->GetTransform(), shape->m_vertices[i]);
      pts[i][0] = cv.px(w.x);
      pts[i][1] = cv.py(w.y);
    }
    fill_polygon(cv, pts, n, kBodyFill);
    for (int i = 0, j = n - 1; i < n; j = i++)
      draw_line(cv, pts[j][0], pts[j][1], pts[i][0], pts[i][1], kBodyOutline);
  }
}

void draw_scene(const LunarLander &ll, Canvas &cv) {
  // ground everywhere, then the sky above each terrain chunk
  for (int y = 0; y < cv.height; y++)
    for (int x = 0; x < cv.width; x++)
      cv.put(x, y, kGround);
  for (int i = 0; i < kChunks - 1; i++) {
    const double sky[4][2] = {{cv.px(ll.chunk_x[i]), cv.py(ll.smooth_y[i])},
                              {cv.px(ll.chunk_x[i + 1]), cv.py(ll.smooth_y[i + 1])},
                              {cv.px(ll.chunk_x[i + 1]), cv.py(kH)},
                              {cv.px(ll.chunk_x[i]), cv.py(kH)}};
    fill_polygon(cv, sky, 4, kSky);
  }
  draw_body(cv, ll.lander);
  draw_body(cv, ll.legs[0]);
  draw_body(cv, ll.legs[1]);
  for (double flag_x : {ll.helipad_x1, ll.helipad_x2}) { // 50 px poles, 25 px pennants
    const double y1 = ll.helipad_y, y2 = y1 + 50 / kScale;
    draw_line(cv, cv.px(flag_x), cv.py(y1), cv.px(flag_x), cv.py(y2), kPole);
    const double pennant[3][2] = {{cv.px(flag_x), cv.py(y2)},
                                  {cv.px(flag_x), cv.py(y2 - 10 / kScale)},
                                  {cv.px(flag_x + 25 / kScale), cv.py(y2 - 5 / kScale)}};
    fill_polygon(cv, pennant, 3, kFlag);
  }
}

// --- the heuristic expert (Gymnasium's heuristic(env, s)) -----------------------

void heuristic(bool continuous, const double *s, double *action) {
  double angle_targ = clip(s[0] * 0.5 + s[2] * 1.0, -0.4, 0.4); // more than 0.4 rad (22 deg) is bad
  double hover_targ = 0.55 * std::fabs(s[0]);
  double angle_cmd = (angle_targ - s[4]) * 0.5 - s[5] * 1.0;
  double hover_cmd = (hover_targ - s[1]) * 0.5 - s[3] * 0.5;
  if (s[6] != 0 || s[7] != 0) { // legs down: stop steering, only damp the fall
    angle_cmd = 0;
    hover_cmd = -s[3] * 0.5;
  }
  if (continuous) {
    action[0] = clip(hover_cmd * 20 - 1, -1, 1);
    action[1] = clip(-angle_cmd * 20, -1, 1);
    return;
  }
  double a = 0;
  if (hover_cmd > std::fabs(angle_cmd) && hover_cmd > 0.05)
    a = 2;
  else if (angle_cmd < -0.05)
    a = 3;
  else if (angle_cmd > 0.05)
    a = 1;
  action[0] = a;
}

// --- task entry points ----------------------------------------------------------

mile_env_status read_options(LunarLander &ll, mile_env_options *opts, const char *name) {
  int64_t wind = 0;
  mile_env_status st;
  if ((st = mile_env_option_double(opts, "gravity", kDefaultGravity, &ll.gravity)) != MILE_ENV_OK)
    return st;
  if ((st = mile_env_option_int(opts, "enable_wind", 0, &wind)) != MILE_ENV_OK)
    return st;
  if ((st = mile_env_option_double(opts, "wind_power", kDefaultWindPower, &ll.wind_power)) != MILE_ENV_OK)
    return st;
  if ((st = mile_env_option_double(opts, "turbulence_power", kDefaultTurbulencePower, &ll.turbulence_power)) !=
      MILE_ENV_OK)
    return st;
  if (!(ll.gravity > -12.0 && ll.gravity < 0.0))
    return mile_env_error(MILE_ENV_ERR_ARGUMENT, "%s: gravity=%g must lie in (-12, 0)", name, ll.gravity);
  if (wind != 0 && wind != 1)
    return mile_env_error(MILE_ENV_ERR_ARGUMENT, "%s: enable_wind must be 0 or 1 (true/false)", name);
  ll.enable_wind = wind == 1;
  return MILE_ENV_OK;
}

mile_env_status create(mile_env *env, mile_env_options *opts, bool continuous) {
  LunarLander *ll = new (std::nothrow) LunarLander();
  if (ll == nullptr)
    return mile_env_error(MILE_ENV_ERR_NOMEM, "out of memory creating %s", env->task->name);
  env->impl = ll;
  ll->continuous = continuous;
  mile_env_status st = read_options(*ll, opts, env->task->name);
  if (st != MILE_ENV_OK)
    return st;

  // v3 observation bounds (observations are not clipped to them)
  static const double low[kObsDim] = {-2.5, -2.5, -10, -10, -2 * M_PI, -10, 0, 0};
  static const double high[kObsDim] = {2.5, 2.5, 10, 10, 2 * M_PI, 10, 1, 1};
  env->obs_space.discrete = 0;
  env->obs_space.n = kObsDim;
  std::memcpy(env->obs_space.low, low, sizeof low);
  std::memcpy(env->obs_space.high, high, sizeof high);
  if (continuous) {
    env->act_space.discrete = 0;
    env->act_space.n = 2;
    for (int i = 0; i < 2; i++)
      env->act_space.low[i] = -1, env->act_space.high[i] = 1;
  } else {
    env->act_space.discrete = 1;
    env->act_space.n = 4;
  }
  env->max_episode_steps = kMaxEpisodeSteps;
  return MILE_ENV_OK;
}

// Exceptions (std::bad_alloc from Box2D's allocations) become a status here.
template <typename F> mile_env_status guarded(mile_env *env, F &&body) {
  try {
    return body();
  } catch (const std::bad_alloc &) {
    return mile_env_error(MILE_ENV_ERR_NOMEM, "%s: out of memory", env->task->name);
  } catch (...) {
    return mile_env_error(MILE_ENV_ERR_SIM, "%s: unexpected failure in Box2D", env->task->name);
  }
}

} // namespace

extern "C" {

static mile_env_status lunar_create_discrete(mile_env *env, mile_env_options *opts) {
  return guarded(env, [&] { return create(env, opts, false); });
}

static mile_env_status lunar_create_continuous(mile_env *env, mile_env_options *opts) {
  return guarded(env, [&] { return create(env, opts, true); });
}

static void lunar_destroy(mile_env *env) {
  delete impl_of(env);
  env->impl = nullptr;
}

static mile_env_status lunar_reset(mile_env *env, double *obs) {
  return guarded(env, [&] {
    LunarLander &ll = *impl_of(env);
    build_world(ll, &env->rng);
    // Gymnasium's reset ends with a no-op step and returns its observation
    const double noop[2] = {0, 0};
    mile_env_step_result ignored;
    return advance(env, noop, obs, &ignored);
  });
}

static mile_env_status lunar_step(mile_env *env, const double *action, double *obs, mile_env_step_result *result) {
  return guarded(env, [&] { return advance(env, action, obs, result); });
}

static mile_env_status lunar_expert_act(mile_env *env, const double *obs, double *action) {
  heuristic(impl_of(env)->continuous, obs, action);
  return MILE_ENV_OK;
}

static mile_env_status lunar_render(mile_env *env, uint8_t *rgb, int32_t width, int32_t height) {
  return guarded(env, [&] {
    LunarLander &ll = *impl_of(env);
    Canvas cv{rgb, width, height};
    if (!ll.world) { // before the first reset: an empty sky
      std::memset(rgb, 0, static_cast<size_t>(width) * height * 3);
      return MILE_ENV_OK;
    }
    draw_scene(ll, cv);
    return MILE_ENV_OK;
  });
}

// field order of mile_env_task: name, create, destroy, reset, step, expert_act, render
extern const mile_env_task mile_task_lunar_lander = {
    "LunarLander-v3", lunar_create_discrete, lunar_destroy, lunar_reset, lunar_step, lunar_expert_act, lunar_render};

extern const mile_env_task mile_task_lunar_lander_continuous = {
    "LunarLanderContinuous-v3", lunar_create_continuous, lunar_destroy, lunar_reset, lunar_step, lunar_expert_act,
    lunar_render};

} // extern "C"
