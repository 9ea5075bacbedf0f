# Runs at install time (cmake --install, cpack): installs the systemd unit and the example
# config with their paths matched to the prefix being installed into. The unit in the tree
# names /usr/bin and /etc (the Debian package's layout); for another prefix P it names
# P/bin and P/etc. The config in the tree names the zoo relative to itself
# (../models/rmc1.json: systemd/ beside models/ in a checkout); installed, it names
# P/share/recsched/models. Needs RECSCHED_SOURCE_DIR and
# RECSCHED_BINARY_DIR (set by packaging.cmake's install(CODE)).
set(_prefix "${CMAKE_INSTALL_PREFIX}")
if(_prefix STREQUAL "/usr")
  set(_sysconfdir "/etc")
else()
  set(_sysconfdir "${_prefix}/etc")
endif()
set(_out "${RECSCHED_BINARY_DIR}/packaging/configured")
file(MAKE_DIRECTORY "${_out}")

file(READ "${RECSCHED_SOURCE_DIR}/systemd/recschedd.service" _unit)
string(REPLACE "/usr/bin/recschedd" "${_prefix}/bin/recschedd" _unit "${_unit}")
string(REPLACE "/etc/recsched/recschedd.json" "${_sysconfdir}/recsched/recschedd.json" _unit "${_unit}")
file(WRITE "${_out}/recschedd.service" "${_unit}")
file(INSTALL DESTINATION "${_prefix}/lib/systemd/system" TYPE FILE FILES "${_out}/recschedd.service")

file(READ "${RECSCHED_SOURCE_DIR}/systemd/recschedd.json" _config)
string(REPLACE "\"../models/" "\"${_prefix}/share/recsched/models/" _config "${_config}")
file(WRITE "${_out}/recschedd.json" "${_config}")
file(INSTALL DESTINATION "${_sysconfdir}/recsched" TYPE FILE FILES "${_out}/recschedd.json")
